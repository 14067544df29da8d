"""ISTA-Net+: architecture, the official releases through the CLI, importer errors, training."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from scipy.io import savemat
from torch import nn

from official_release import official_state_dict, write_release
from spade.cli import main
from spade.data import PatchDataset, load_images
from spade.errors import SpadeError
from spade.models import count_parameters, create_model, load_model
from spade.models.ista_net_plus import ISTAPhase
from spade.physics import MRI, BlockCS, gaussian_phi, random_mask
from spade.physics.cs import batch_to_blocks, blocks_to_batch


def cli(capsys, *argv):
    """Run the ``spade`` command in-process: (exit code, stdout, stderr)."""
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def release(bench_data, name):
    """Paths of an official release: weights, and Phi/Qinit (CS) or the mask (MRI)."""
    d = bench_data / "ista_net_plus" / name
    if name.startswith("cs"):
        r = name[2:]
        return {"weights": d / "net_params_200.pkl", "phi": d / f"phi_0_{r}_1089.mat",
                "qinit": d / f"Initialization_Matrix_{r}.mat"}
    return {"weights": d / "net_params_200.pkl", "mask": d / "mask_20.mat"}


def import_args(files, out):
    args = ["import", "ista-net-plus", files["weights"], "--out", out]
    for key in ("phi", "qinit", "mask"):
        if key in files:
            args += [f"--{key}", files[key]]
    return args


# --- architecture ------------------------------------------------------------------

def test_official_architecture():
    model = create_model("ista-net-plus")
    assert count_parameters(model) == 336_978
    phases = list(model.sharing.blocks)
    assert len(phases) == 9 and all(isinstance(p, ISTAPhase) for p in phases)
    for p in phases:
        assert p.conv_D.out_channels == 32 and p.conv_G.in_channels == 32
        assert p.lambda_step.shape == (1,) and p.soft_thr.shape == (1,)
    # every weight lives in an nn.Conv2d (a dependency-graph pruner sees them all)
    owners = {name.rpartition(".")[0]: type(model.get_submodule(name.rpartition(".")[0]))
              for name, _ in model.named_parameters()}
    for owner, kind in owners.items():
        assert kind in (nn.Conv2d, ISTAPhase), owner
    scalars = [n for n, p in model.named_parameters() if owners[n.rpartition(".")[0]] is ISTAPhase]
    assert sorted({n.rpartition(".")[2] for n in scalars}) == ["lambda_step", "soft_thr"]


def test_cs_forward_with_symmetry_penalty():
    model = create_model("ista-net-plus").train()
    physics = BlockCS.gaussian(0.25, seed=1)
    x = torch.rand(2, 1, 66, 99)
    out, aux = model(physics.A(x), physics, return_aux=True)
    assert out.shape == x.shape and len(aux["iterates"]) == 9
    reg = aux["regularizer"]
    assert reg.dim() == 0 and reg.item() > 0 and reg.requires_grad


def test_a_teachers_iterates_skip_the_symmetry_branch():
    """A school teacher asks for its iterates with ``iterates_kwargs``: the same iterates,
    the penalty's two extra convolutions per phase not run."""
    torch.manual_seed(0)
    model = create_model("ista-net-plus", phases=3, channels=8).eval()
    physics = BlockCS.gaussian(0.25, seed=1)
    y = physics.A(torch.rand(1, 1, 66, 66))
    calls = []
    hook = model.sharing.blocks[0].conv2_backward.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        out, aux = model(y, physics, return_aux=True)
        assert len(calls) == 2 and aux["regularizer"] is not None
        calls.clear()
        out0, aux0 = model(y, physics, **model.iterates_kwargs)
    hook.remove()
    assert len(calls) == 1 and aux0["regularizer"] is None
    assert torch.equal(out0, out)
    assert all(torch.equal(a, b) for a, b in zip(aux0["iterates"], aux["iterates"]))


def _cut_per_phase(model, y, physics):
    """ISTA-Net+ as the official code lays it out: a gradient step on the image, then the
    image cut into blocks for the prior and put back together, at every phase."""
    x = physics.A_dagger(y)
    iterates, sym_terms = [], []
    for phase, scales in model.sharing.schedule():
        r = physics.gradient_step(x, y, phase.lambda_step)
        rb, sym = phase(blocks_to_batch(r, 33), scales, with_sym=True)
        x = batch_to_blocks(rb, r.shape)
        iterates.append(x)
        sym_terms.append(torch.mean(sym ** 2))
    return x, iterates, model.sym_weight * torch.stack(sym_terms).sum()


@pytest.mark.parametrize("sharing, dtype, tol", [("untied", torch.float64, 1e-10), ("tied", torch.float64, 1e-10),
                                                  ("recursive", torch.float32, 1e-5)])  # (modulation input: float32)
def test_cs_network_runs_on_the_batch_of_blocks_like_the_per_phase_cut(sharing, dtype, tol):
    torch.manual_seed(0)
    model = create_model("ista-net-plus", phases=3, channels=8, sharing=sharing, stages=2, recursions=2).to(dtype).eval()
    phi = gaussian_phi(0.25, seed=1)
    physics = BlockCS(phi, phi.T.contiguous()).to(dtype)
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))  # modulation and thresholds away from their start
    y = physics.A(torch.rand(2, 1, 66, 99, dtype=dtype))
    want, want_iterates, want_reg = _cut_per_phase(model, y, physics)
    got, aux = model(y, physics, return_aux=True)
    assert got.shape == (2, 1, 66, 99) and torch.allclose(got, want, atol=tol)
    assert len(aux["iterates"]) == len(want_iterates)
    assert all(torch.allclose(a, b, atol=tol) for a, b in zip(aux["iterates"], want_iterates))
    assert torch.allclose(aux["regularizer"], want_reg, rtol=tol)
    with torch.no_grad():
        assert torch.allclose(model(y, physics), want, atol=tol)


def test_prior_features_are_channels_last():
    """oneDNN convolutions run on NHWC features without reordering them at every layer."""
    phase = ISTAPhase(channels=8).eval()
    seen = []
    for conv in (phase.conv_D, phase.conv1_forward, phase.conv2_backward, phase.conv_G):
        conv.register_forward_hook(lambda m, i, o: seen.append(i[0].is_contiguous(memory_format=torch.channels_last)
                                                               and o.is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        x, _ = phase(torch.rand(4, 1, 33, 33))
    assert x.shape == (4, 1, 33, 33) and len(seen) == 4 and all(seen)
    # the conv inputs carry channels-last strides, not only an ambiguous one-channel layout
    assert phase.conv1_forward(phase.conv_D(torch.rand(4, 1, 33, 33).clone(memory_format=torch.channels_last))
                               ).stride()[1] == 1


def test_mri_forward_and_block_size_check():
    physics = MRI(random_mask((64, 64), 4, 0.08, seed=0), real_image=True, centered=False)
    x = torch.rand(2, 1, 64, 64)
    out = create_model("ista-net-plus", block_size=None).eval()(physics.A(x), physics)
    assert out.shape == x.shape
    with pytest.raises(SpadeError, match="block_size=None"):
        create_model("ista-net-plus")(physics.A(x), physics)


def _train(model, physics, x, steps, lr):
    """Adam steps on (x, physics) with the training loss of ISTA-Net+; returns the
    loss before and after (eval mode)."""
    y = physics.A(x)

    def loss_of():
        out, aux = model(y, physics, return_aux=True)
        return torch.mean((out - x) ** 2) + aux["regularizer"]

    model.eval()
    with torch.no_grad():
        before = float(loss_of())
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = loss_of()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = float(loss_of())
    return before, after


@pytest.mark.parametrize("sharing", ["untied", "recursive"])
def test_cs_training_lowers_loss(sharing):
    patches = PatchDataset(load_images("embedded"), 33, 2, seed=0)
    x = torch.stack([patches[i] for i in range(2)])
    model = create_model("ista-net-plus", sharing=sharing)
    before, after = _train(model, BlockCS.gaussian(0.25, seed=0), x, steps=8, lr=3e-4)
    assert after < 0.8 * before


def test_mri_training_lowers_loss():
    image = load_images("embedded-mri")[0].tensor()  # a real 256x256 MR slice
    x = torch.stack([image[:, 96:128, 96:128], image[:, 128:160, 112:144]])
    physics = MRI(random_mask((32, 32), 4, 0.08, seed=0), real_image=True)
    model = create_model("ista-net-plus", block_size=None)
    before, after = _train(model, physics, x, steps=8, lr=3e-4)
    assert after < 0.8 * before


# --- the official releases through the command line --------------------------------

def _reproduce(capsys, tmp_path, bench_data, name, data, psnr, ssim):
    files = release(bench_data, name)
    out = tmp_path / f"{name}.spade"
    rc, _, err = cli(capsys, *import_args(files, out))
    assert rc == 0, err
    rc, text, err = cli(capsys, "evaluate", out, "--data", data, "--json")
    assert rc == 0, err
    result = json.loads(text)
    assert abs(result["psnr"] - psnr) <= 0.01, result["psnr"]
    assert abs(result["ssim"] - ssim) <= 1e-4, result["ssim"]
    assert result["psnr"] > result["init_psnr"] + 2
    return result


def test_official_cs25_set11(capsys, tmp_path, bench_data):
    result = _reproduce(capsys, tmp_path, bench_data, "cs25", "set11", 32.44, 0.9237)
    assert result["protocol"] == "ista-cs" and len(result["per_image"]) == 11
    loaded = load_model(tmp_path / "cs25.spade")
    assert isinstance(loaded.physics, BlockCS) and loaded.physics.m == 272
    assert loaded.model.config["block_size"] == 33


@pytest.mark.slow
def test_official_cs10_set11(capsys, tmp_path, bench_data):
    _reproduce(capsys, tmp_path, bench_data, "cs10", "set11", 26.49, 0.8036)


@pytest.mark.slow
def test_official_mri20_brain50(capsys, tmp_path, bench_data):
    result = _reproduce(capsys, tmp_path, bench_data, "mri20", "brain50", 38.70, 0.9484)
    assert result["protocol"] == "ista-mri" and len(result["per_image"]) == 50
    assert abs(result["init_psnr"] - 30.41) <= 0.01


def test_import_reads_the_ratio_from_phi(capsys, tmp_path, bench_data):
    """The importer needs no ratio: the official 10% release imports as it is."""
    rc, text, err = cli(capsys, *import_args(release(bench_data, "cs10"), tmp_path / "m.spade"), "--json")
    assert rc == 0, err
    summary = json.loads(text)
    assert summary["physics"]["settings"]["measurements"] == 109 and summary["phases"] == 9


@pytest.mark.parametrize("name", ["cs25", "mri20"])
def test_official_format_round_trip(name, capsys, tmp_path):
    """A release in the official format (built here) imports with its exact tensors: every
    official weight, Phi and Qinit (CS) or the mask (MRI) is in the model file."""
    files = write_release(tmp_path, name, phases=3, channels=4, seed=1)
    rc, text, err = cli(capsys, *import_args(files, tmp_path / "m.spade"), "--json")
    assert rc == 0, err
    assert json.loads(text)["phases"] == 3
    loaded = load_model(tmp_path / "m.spade")
    state = loaded.model.state_dict()
    for key, value in official_state_dict(phases=3, channels=4, seed=1).items():
        i, param = key.split(".")[2], key.split(".")[3]
        ours = state[f"sharing.blocks.{i}.{param}" + ("" if param in ("lambda_step", "soft_thr") else ".weight")]
        assert torch.equal(ours, value), key
    if name == "cs25":
        from scipy.io import loadmat
        assert torch.allclose(loaded.physics.phi.double(), torch.from_numpy(loadmat(files["phi"])["phi"]), atol=1e-7)
        assert loaded.model.config["block_size"] == 33
    else:
        from scipy.io import loadmat
        assert isinstance(loaded.physics, MRI) and loaded.model.config["block_size"] is None
        assert torch.equal(loaded.physics.mask.double().squeeze(), torch.from_numpy(loadmat(files["mask"])["mask_matrix"]))


# --- importer errors: one clear line, exit code 2, nothing written -----------------

@pytest.fixture
def releases(tmp_path):
    """Official-format releases built by the test (cs10, cs25: 2 phases of 4 channels; mri20)."""
    return {name: write_release(tmp_path / "releases", name) for name in ("cs10", "cs25", "mri20")}


def _state_dict(releases):
    return torch.load(releases["cs25"]["weights"], map_location="cpu", weights_only=True)


def _save_weights(tmp_path, sd):
    path = tmp_path / "net_params_200.pkl"
    torch.save(sd, path)
    return path


def _case(name, tmp_path, releases):
    """Files of one mismatched release and a fragment of the expected message."""
    cs25, cs10 = releases["cs25"], releases["cs10"]
    if name == "phi-of-another-ratio":  # a 10% Phi and Qinit renamed as the 25% release
        shutil.copy(cs10["phi"], tmp_path / "phi_0_25_1089.mat")
        shutil.copy(cs10["qinit"], tmp_path / "Initialization_Matrix_25.mat")
        return dict(cs25, phi=tmp_path / "phi_0_25_1089.mat",
                    qinit=tmp_path / "Initialization_Matrix_25.mat"), "named for a 25% ratio"
    if name == "files-of-two-releases":
        return dict(cs10, weights=cs25["weights"]), "different sampling ratios"
    if name == "qinit-wrong-shape":
        savemat(tmp_path / "qinit.mat", {"Qinit": np.zeros((1089, 100))})
        return dict(cs25, qinit=tmp_path / "qinit.mat"), "expected (1089, 272)"
    if name == "qinit-of-another-phi":
        savemat(tmp_path / "phi.mat", {"phi": gaussian_phi(0.25, seed=3).double().numpy()})
        return dict(cs25, phi=tmp_path / "phi.mat"), "does not belong to this Phi"
    if name == "missing-key":
        sd = _state_dict(releases)
        del sd["module.fcs.1.soft_thr"]
        return dict(cs25, weights=_save_weights(tmp_path, sd)), "misses ISTA-Net+ keys: ['fcs.1.soft_thr']"
    if name == "extra-key":
        sd = _state_dict(releases)
        sd["module.fcs.0.conv_D_bias"] = torch.zeros(32)
        return dict(cs25, weights=_save_weights(tmp_path, sd)), "keys that are not ISTA-Net+'s"
    if name == "wrong-tensor-shape":
        sd = _state_dict(releases)
        sd["module.fcs.1.conv_G"] = torch.zeros(1, 16, 3, 3)
        return dict(cs25, weights=_save_weights(tmp_path, sd)), "fcs.1.conv_G (1, 16, 3, 3)"
    if name == "unreadable-weights":
        path = tmp_path / "net_params_200.pkl"
        path.write_bytes(b"this is not a checkpoint")
        return dict(cs25, weights=path), "cannot read weights"
    if name == "unreadable-phi":
        path = tmp_path / "phi.mat"
        path.write_bytes(b"MATLAB? no")
        return dict(cs25, phi=path), "cannot read"
    if name == "missing-file":
        return dict(cs25, qinit=tmp_path / "nowhere.mat"), "does not exist"
    if name == "unreadable-mask":
        path = tmp_path / "mask.mat"
        path.write_bytes(b"\x00\x01garbage")
        return dict(releases["mri20"], mask=path), "cannot read mask file"
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["phi-of-another-ratio", "files-of-two-releases", "qinit-wrong-shape",
                                  "qinit-of-another-phi", "missing-key", "extra-key", "wrong-tensor-shape",
                                  "unreadable-weights", "unreadable-phi", "missing-file", "unreadable-mask"])
def test_import_errors(name, capsys, tmp_path, releases):
    inputs = tmp_path / "in"
    inputs.mkdir()
    files, message = _case(name, inputs, releases)
    out = tmp_path / "out" / "model.spade"
    rc, text, err = cli(capsys, *import_args(files, out))
    assert rc == 2
    assert err.startswith("spade import: error: ") and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "releases"]  # no output, no temporary left


def test_import_checks_an_expected_ratio(capsys, tmp_path, releases):
    out = tmp_path / "m.spade"
    rc, _, err = cli(capsys, *import_args(releases["cs10"], out), "--ratio", "0.25")
    assert rc == 2 and "not the expected ratio 0.25" in err and not out.exists()
