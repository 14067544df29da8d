"""Model files: round trips, resized (pruned) layers, corrupt and mismatched files; sharing modes."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from spade.errors import SpadeError
from spade.models import count_parameters, create_model, load_model, save_model
from spade.models.io import read_spec
from spade.physics import BlockCS


@pytest.fixture
def small():
    torch.manual_seed(0)
    return create_model("ista-net-plus", phases=2, channels=8), BlockCS.gaussian(0.25, seed=1)


def _y(physics):
    return physics.A(torch.rand(1, 1, 66, 66))


def test_round_trip_identical_outputs(tmp_path, small):
    model, physics = small
    spec = save_model(tmp_path / "m.spade", model, physics, note="x")
    loaded = load_model(tmp_path / "m.spade")
    assert spec["family"] == "ista-net-plus" and spec["config"]["channels"] == 8 and spec["note"] == "x"
    y = _y(physics)
    with torch.no_grad():
        assert torch.equal(model.eval()(y, physics), loaded.model(y, loaded.physics))
    assert not loaded.model.training


def test_resized_layers_are_rebuilt_from_the_spec(tmp_path, small):
    """Channels removed by hand (as a pruner does) survive a save/load round trip."""
    model, physics = small
    keep = torch.tensor([0, 2, 3, 5, 7])
    phase = model.sharing.blocks[0]
    with torch.no_grad():
        for name in ("conv1_forward",):
            conv = getattr(phase, name)
            conv.weight = nn.Parameter(conv.weight[keep].clone())
            conv.out_channels = len(keep)
        nxt = phase.conv2_forward
        nxt.weight = nn.Parameter(nxt.weight[:, keep].clone())
        nxt.in_channels = len(keep)
    spec = save_model(tmp_path / "p.spade", model, physics)
    assert spec["shapes"] == {"sharing.blocks.0.conv1_forward.weight": [5, 8, 3, 3],
                              "sharing.blocks.0.conv2_forward.weight": [8, 5, 3, 3]}
    assert spec["widths"]["sharing.blocks.0.conv1_forward"] == [8, 5]
    loaded = load_model(tmp_path / "p.spade")
    assert loaded.model.sharing.blocks[0].conv1_forward.out_channels == 5
    y = _y(physics)
    with torch.no_grad():
        assert torch.allclose(model.eval()(y, physics), loaded.model(y, loaded.physics))


def test_bad_model_files(tmp_path, small):
    model, physics = small
    with pytest.raises(SpadeError, match="does not exist"):
        load_model(tmp_path / "none.spade")
    (tmp_path / "junk.spade").write_bytes(b"garbage")
    with pytest.raises(SpadeError, match="not a SPADE model file or corrupt"):
        load_model(tmp_path / "junk.spade")
    torch.save({"a": torch.zeros(1)}, tmp_path / "sd.pt")
    with pytest.raises(SpadeError, match="not a SPADE model file"):
        load_model(tmp_path / "sd.pt")
    save_model(tmp_path / "m.spade", model, physics)
    spec, blob = read_spec(tmp_path / "m.spade")
    blob["state_dict"].pop("sharing.blocks.0.conv_G.weight")
    torch.save(blob, tmp_path / "missing.spade")
    with pytest.raises(SpadeError, match="missing .*conv_G"):
        load_model(tmp_path / "missing.spade")
    spec["family"] = "nope"
    blob["spec"] = json.dumps(spec)
    torch.save(blob, tmp_path / "family.spade")
    with pytest.raises(SpadeError, match="unknown model family 'nope'"):
        load_model(tmp_path / "family.spade")


def test_unknown_model_settings_are_named():
    with pytest.raises(SpadeError, match=r"no setting \['width'\]"):
        create_model("ista-net-plus", width=3)
    with pytest.raises(SpadeError, match="unknown sharing mode"):
        create_model("ista-net-plus", sharing="shared")


def test_sharing_modes_and_randomised_recursions():
    untied = create_model("ista-net-plus", phases=4, channels=8)
    tied = create_model("ista-net-plus", phases=4, channels=8, sharing="tied")
    rec = create_model("ista-net-plus", channels=8, sharing="recursive", stages=2, recursions=3)
    assert count_parameters(untied) == 4 * count_parameters(tied)
    assert len(rec.sharing.blocks) == 2 and rec.sharing.modulation is not None
    physics = BlockCS.gaussian(0.25)
    y = _y(physics)
    rec.eval()
    _, aux = rec(y, physics, return_aux=True)
    assert len(aux["iterates"]) == 6 and rec.sharing.last_counts == [3, 3]
    rec.train()
    seen = set()
    for _ in range(30):
        _, aux = rec(y, physics, return_aux=True)
        counts = rec.sharing.last_counts
        assert len(aux["iterates"]) == sum(counts) and all(1 <= c <= 3 for c in counts)
        seen.add(tuple(counts))
    assert len(seen) > 3
    # modulation starts as the identity: recursive == tied schedule of the same blocks
    rec.eval()
    scales = rec.sharing.schedule()
    assert all(torch.equal(s, torch.ones_like(s)) for _, sc in scales for s in sc)
