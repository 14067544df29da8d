"""Official-format ISTA-Net+ releases built by the tests themselves (no benchmark data).

The files have the layout of the official release: a ``net_params_200.pkl`` state_dict
with ``module.fcs.N.*`` keys, ``phi_0_R_1089.mat`` (key ``phi``) and
``Initialization_Matrix_R.mat`` (key ``Qinit``, the least-squares fit to Phi) for CS,
``mask_20.mat`` (key ``mask_matrix``) for MRI.
"""
from __future__ import annotations

from pathlib import Path

import torch
from scipy.io import savemat

from spade.models import create_model
from spade.models.importers import ISTA_KEYS
from spade.physics import gaussian_phi, random_mask
from spade.physics.cs import least_squares_qinit


def official_state_dict(phases: int = 2, channels: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ISTA-Net+ weights under the official key names."""
    torch.manual_seed(seed)
    model = create_model("ista-net-plus", phases=phases, channels=channels)
    sd = model.state_dict()
    return {f"module.fcs.{i}.{name}": sd[f"sharing.blocks.{i}.{name}" + ("" if name in ISTA_KEYS[:2] else ".weight")]
            for i in range(phases) for name in ISTA_KEYS}


def write_release(folder: Path, name: str, phases: int = 2, channels: int = 4, seed: int = 0) -> dict[str, Path]:
    """Write release ``name`` (``cs10``, ``cs25``, ``mri20``, ...) into ``folder/name``;
    returns its paths as the importer's arguments (weights, phi + qinit, or mask)."""
    d = Path(folder) / name
    d.mkdir(parents=True, exist_ok=True)
    files = {"weights": d / "net_params_200.pkl"}
    torch.save(official_state_dict(phases, channels, seed), files["weights"])
    if name.startswith("cs"):
        r = name[2:]
        phi = gaussian_phi(int(r) / 100, seed=seed).double()
        blocks = torch.rand(2 * phi.shape[0], phi.shape[1], generator=torch.Generator().manual_seed(seed),
                            dtype=torch.float64)
        files["phi"], files["qinit"] = d / f"phi_0_{r}_1089.mat", d / f"Initialization_Matrix_{r}.mat"
        savemat(files["phi"], {"phi": phi.numpy()})
        savemat(files["qinit"], {"Qinit": least_squares_qinit(phi, blocks).numpy()})
    else:
        files["mask"] = d / "mask_20.mat"
        savemat(files["mask"], {"mask_matrix": random_mask((64, 64), 5, 0.08, seed=seed).double().numpy()})
    return files
