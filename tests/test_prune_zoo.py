"""Every family of the zoo, in every preset (sharing mode), prunes at 0.25 / 0.5 / 0.75
and still runs with the same input and output shapes. Families added to the registry
are covered automatically; a physics kind without an entry in EXAMPLE_PHYSICS is
reported as a skip that names the missing entry."""
from __future__ import annotations

import pytest
import torch

import spade
from spade.data import example_pair
from spade.models import create_model, families
from spade.physics import MRI, BlockCS, SuperResolution, build_physics, equispaced_mask

EXAMPLE_PHYSICS = {
    "cs": lambda: BlockCS.gaussian(0.25),
    "mri": lambda: MRI(equispaced_mask((32, 32), 4, 0.08), real_image=False),
    "sr": lambda: SuperResolution(2),
    "sparse": lambda: build_physics({"kind": "sparse"}),
}
CASES = [(name, preset) for name, fam in sorted(families().items()) for preset in fam.presets]


def example(kind):
    physics = EXAMPLE_PHYSICS[kind]()
    side = {"cs": 33, "sr": 32}.get(kind)
    channels = 1
    return physics, example_pair(physics, side=side, channels=channels)[1]


@pytest.mark.parametrize("name, preset", CASES)
def test_every_family_prunes_in_every_sharing_mode(name, preset):
    fam = families()[name]
    kind = fam.physics[0]
    if kind not in EXAMPLE_PHYSICS:
        pytest.skip(f"no example physics for kind '{kind}': add it to EXAMPLE_PHYSICS in {__file__}")
    physics, y = example(kind)
    model = create_model(name, **fam.presets[preset]).eval()
    with torch.no_grad():
        reference = model(y, physics)
    for ratio in (0.25, 0.5, 0.75):
        small, record = spade.prune(model, (y, physics), ratio=ratio)
        assert record.params_after < record.params_before, f"{name}/{preset} lost no parameter at {ratio}"
        with torch.no_grad():
            out = small.eval()(y, physics)
        assert out.shape == reference.shape and torch.isfinite(out).all()
