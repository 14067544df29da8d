"""School distillation on the iterations: pairing (depth-pruned and by position), caching, descent."""
from __future__ import annotations

import pytest
import torch

from spade.errors import SpadeError
from spade.finetune.losses import pixel_loss
from spade.finetune.strategies import Context, create_strategy, kept_iterations
from spade.models import create_model
from spade.physics import BlockCS


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    physics = BlockCS.gaussian(0.25)
    teacher = create_model("ista-net-plus", phases=3, channels=8).eval().requires_grad_(False)
    student = create_model("ista-net-plus", phases=2, channels=8)  # the teacher without its last phase
    student.sharing.blocks.load_state_dict({k: v for k, v in teacher.sharing.blocks.state_dict().items()
                                            if not k.startswith("2.")})
    y = physics.simulate(torch.rand(2, 1, 33, 33), seed=0)
    return physics, teacher, student, y


def test_kept_iterations_name_the_teacher_iterations_kept():
    assert kept_iterations({"unit": "iteration", "total": 9, "removed": [1, 2, 4, 5, 7, 8]}) == [1, 4, 7]
    with pytest.raises(SpadeError, match="whole iterations"):
        kept_iterations({"unit": "stage", "total": 3, "removed": [1]})


def school_loss(strategy, student, teacher, physics, y, key=None):
    x_net, aux = student(y, physics, return_aux=True)
    return strategy.loss(x_net, y, physics, student, Context(aux=aux, teacher=teacher, key=key)), x_net


def test_depth_pairing_matches_each_kept_iteration_with_the_one_it_replaces(setup):
    physics, teacher, student, y = setup
    kept = kept_iterations({"unit": "iteration", "total": 3, "removed": [2]})
    by_depth = create_strategy("school", iterates=1.0, teacher_iterates=kept)
    by_position = create_strategy("school", iterates=1.0)
    with torch.no_grad():
        loss, x_net = school_loss(by_depth, student, teacher, physics, y)
        output_only = pixel_loss(x_net, teacher(y, physics))
        shifted, _ = school_loss(by_position, student, teacher, physics, y)
    assert float(output_only) > 0
    torch.testing.assert_close(loss, output_only)  # kept iterates equal the teacher's: no iterate term
    assert float(shifted) > float(loss) * 1.5  # by position, iterate 1 meets teacher iterate 2


def test_teacher_iterates_that_do_not_fit_are_named(setup):
    physics, teacher, student, y = setup
    with pytest.raises(SpadeError, match="do not fit a student of 2"):
        school_loss(create_strategy("school", iterates=1.0, teacher_iterates=[1, 2, 3]), student, teacher, physics, y)
    with pytest.raises(SpadeError, match="teacher_iterates"):
        create_strategy("school", iterates=1.0, teacher_iterates=[0, 2])


def test_iteration_distillation_descends_and_caches_the_teacher(setup):
    physics, teacher, _, y = setup
    torch.manual_seed(1)
    student = create_model("ista-net-plus", phases=2, channels=4)
    strategy = create_strategy("school", iterates=1.0, teacher_iterates=[2, 3])
    calls = []
    handle = teacher.register_forward_hook(lambda *_: calls.append(1))
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    losses = []
    try:
        for _ in range(15):
            loss, _ = school_loss(strategy, student, teacher, physics, y, key="batch-0")
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    finally:
        handle.remove()
    assert len(calls) == 1  # the teacher ran once for the fixed batch
    assert losses[-1] < 0.8 * losses[0]
