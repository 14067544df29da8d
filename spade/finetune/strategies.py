"""Fine-tuning strategies: small classes with one ``loss`` method, behind one registry.

A strategy turns the student's reconstruction into a scalar loss::

    loss(x_net, y, physics, model, ctx) -> torch.Tensor

``x_net`` is ``model(y, physics)`` (computed once per batch by the engine and shared by
every strategy of a combination), ``y`` the measurements, ``model`` the student (to
reconstruct again, e.g. for equivariant imaging), and ``ctx`` a :class:`Context`.
``ctx.x`` (the ground truth) is ``None`` unless the class sets ``uses_ground_truth``:
a strategy that does not declare it cannot see the ground truth.

Built-in: ``supervised`` (ground truth), ``school`` (distillation from a frozen teacher),
``self-supervised`` (measurement consistency + equivariant imaging). More come from
installed packages through the entry-point group ``spade.strategies``::

    [project.entry-points."spade.strategies"]
    tv = "my_package.strategies:TotalVariation"

Built-in names take precedence over plug-ins of the same name.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import torch
from torch import nn

from ..errors import SpadeError, require
from .losses import TRANSFORMS, EILoss, MCLoss, check_metric, pixel_loss

ENTRY_POINT_GROUP = "spade.strategies"


@dataclass
class Context:
    """What a strategy may use besides ``(x_net, y, physics, model)``.

    x: ground truth (B, C, H, W), or None unless the strategy ``uses_ground_truth``.
    aux: the student's ``aux`` (``"iterates"``: list of (B, C, H, W); ``"regularizer"``).
    teacher: the frozen teacher network (strategies that set ``uses_teacher``), else None.
    key: identity of a fixed batch (the same ``y`` at every epoch), None for fresh batches;
        lets a strategy cache what depends on ``y`` only.
    generator: a ``torch.Generator`` seeded by (seed, step), the same in every process.
    """

    x: torch.Tensor | None = None
    aux: dict = field(default_factory=dict)
    teacher: nn.Module | None = None
    key: Any = None
    generator: torch.Generator | None = None


class Strategy:
    """Base class of fine-tuning strategies (see module docstring)."""

    #: registry name
    name: str = ""
    #: the engine hands the ground truth to this strategy (``ctx.x``)
    uses_ground_truth: bool = False
    #: the strategy needs a frozen teacher (``ctx.teacher``)
    uses_teacher: bool = False

    def loss(self, x_net: torch.Tensor, y: torch.Tensor, physics, model: nn.Module,
             ctx: Context) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


_BUILTIN: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: register a built-in strategy under ``cls.name``."""
    _BUILTIN[cls.name] = cls
    return cls


@register_strategy
class Supervised(Strategy):
    """Loss against the ground truth: ``l1``, ``l2`` or ``ssim`` (``1 - SSIM``)."""

    name = "supervised"
    uses_ground_truth = True

    def __init__(self, metric: str = "l2"):
        self.metric = check_metric(metric)

    def loss(self, x_net, y, physics, model, ctx):
        return pixel_loss(x_net, ctx.x, self.metric)


@register_strategy
class School(Strategy):
    """Distillation: the frozen teacher's reconstruction ``teacher(y)`` is the target.

    ``iterates`` > 0 adds ``iterates x`` the mean distance between intermediate iterates.
    Student and teacher may run different iteration counts (depth pruning, recursive
    models): student iterate ``i`` of ``K_s`` (1-based) is matched with teacher iterate
    ``teacher_iterates[i - 1]`` when given (e.g. :func:`kept_iterations` of a depth-pruned
    model: the teacher iteration each kept one replaces), else with
    ``j = round(i K_t / K_s)`` (clamped to 1..K_t), i.e. by relative position, so that the
    last iterates pair up. Teacher outputs of fixed batches (``ctx.key``) are cached.
    """

    name = "school"
    uses_teacher = True

    def __init__(self, metric: str = "l2", iterates: float = 0.0, teacher_iterates: list[int] | None = None):
        self.metric = check_metric(metric)
        require(iterates >= 0, f"school: iterates weight {iterates} must be >= 0")
        require(teacher_iterates is None or (len(teacher_iterates) > 0 and all(
                type(j) is int and j >= 1 for j in teacher_iterates)),
                f"school: teacher_iterates {teacher_iterates!r} must list teacher iterations (1-based), one per "
                "student iteration")
        self.iterates = float(iterates)
        self.teacher_iterates = None if teacher_iterates is None else list(teacher_iterates)
        self._cache: dict = {}

    def pairs(self, ks: int, kt: int) -> list[int]:
        """The teacher iterate (1-based) matched with each of ``ks`` student iterates."""
        if self.teacher_iterates is None:
            return [min(kt, max(1, round(i * kt / ks))) for i in range(1, ks + 1)]
        require(len(self.teacher_iterates) == ks and max(self.teacher_iterates) <= kt,
                f"school: teacher_iterates {self.teacher_iterates} do not fit a student of {ks} and a teacher of "
                f"{kt} iterations: give one teacher iteration in 1..{kt} per student iteration")
        return self.teacher_iterates

    @torch.no_grad()
    def _teach(self, y, physics, ctx):
        if ctx.key is not None and ctx.key in self._cache:
            return self._cache[ctx.key]
        if self.iterates > 0:
            out, aux = ctx.teacher(y, physics, **getattr(ctx.teacher, "iterates_kwargs", {"return_aux": True}))
            result = (out.detach(), [t.detach() for t in aux["iterates"]])
        else:
            result = (ctx.teacher(y, physics).detach(), [])
        if ctx.key is not None:
            self._cache[ctx.key] = result
        return result

    def loss(self, x_net, y, physics, model, ctx):
        target, t_iterates = self._teach(y, physics, ctx)
        total = pixel_loss(x_net, target, self.metric)
        if self.iterates > 0:
            s_iterates = ctx.aux.get("iterates") or []
            require(s_iterates and t_iterates, "school: iterate matching needs models that return their iterates")
            pairs = [(s, t_iterates[j - 1]) for s, j in zip(s_iterates, self.pairs(len(s_iterates), len(t_iterates)))]
            total = total + self.iterates * torch.stack([pixel_loss(s, t, self.metric) for s, t in pairs]).mean()
        return total


def kept_iterations(depth: dict) -> list[int]:
    """The original iterations (1-based) a depth-pruned model kept, in order, from the
    ``depth`` entry of its pruning record (``{"unit": "iteration", "total": K, "removed":
    [0-based indices]}``): the ``teacher_iterates`` of :class:`School`."""
    require(depth.get("unit") == "iteration",
            f"school: iterations can be paired by depth pruning only when whole iterations were removed "
            f"(this model lost {depth.get('unit')}s): leave teacher_iterates out to pair by relative position")
    removed = set(depth["removed"])
    return [k + 1 for k in range(depth["total"]) if k not in removed]


@register_strategy
class SelfSupervised(Strategy):
    """Measurements only: ``mc_weight * MCLoss + ei_weight * EILoss(transforms)`` (see
    :mod:`spade.finetune.losses`; ``T`` drawn per step from rotations, circular shifts,
    flips). Gradients flow through both reconstructions."""

    name = "self-supervised"

    def __init__(self, transforms=TRANSFORMS, mc_weight: float = 1.0, ei_weight: float = 1.0):
        require(mc_weight >= 0 and ei_weight >= 0 and mc_weight + ei_weight > 0,
                f"self-supervised: weights mc={mc_weight}, ei={ei_weight} must be >= 0 and not both 0")
        self.terms = [(float(w), loss) for w, loss in ((mc_weight, MCLoss()), (ei_weight, EILoss(transforms))) if w > 0]

    def loss(self, x_net, y, physics, model, ctx):
        return sum(w * loss(x_net, y, physics, model, ctx.generator) for w, loss in self.terms)


# --- registry ---------------------------------------------------------------------------
def _plugins() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in _BUILTIN}


def available() -> list[str]:
    """Names of the built-in strategies and of the installed plug-ins."""
    return sorted(set(_BUILTIN) | set(_plugins()))


def get_strategy(name: str) -> type[Strategy]:
    """The strategy class registered as ``name`` (built-in or plug-in)."""
    if name in _BUILTIN:
        return _BUILTIN[name]
    ep = _plugins().get(name)
    if ep is None:
        raise SpadeError(f"unknown strategy '{name}': registered are {available()}")
    try:
        cls = ep.load()
    except Exception as exc:
        raise SpadeError(f"strategy plug-in '{name}' ({ep.value}) cannot be loaded: "
                         f"{exc.__class__.__name__}: {exc}") from None
    require(inspect.isclass(cls) and issubclass(cls, Strategy),
            f"strategy plug-in '{name}' ({ep.value}) is not a subclass of spade.finetune.Strategy")
    return cls


def create_strategy(name: str, **options) -> Strategy:
    """An instance of strategy ``name``; unknown options are named with the allowed ones."""
    cls = get_strategy(name)
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options) - set(params))
    require(not unknown, f"strategy '{name}' has no option {unknown}: allowed are {params}")
    try:
        strategy = cls(**options)
    except SpadeError:
        raise
    except (TypeError, ValueError) as exc:
        raise SpadeError(f"strategy '{name}' rejects options {options}: {exc}") from None
    strategy.name = name
    return strategy


def parse_spec(spec) -> list[tuple[str, float]]:
    """``"school:1,self-supervised:0.5"`` / ``"supervised"`` / ``{"school": 1.0}`` ->
    ``[(name, weight), ...]``; weights default to 1 and must be > 0."""
    if isinstance(spec, dict):
        items = list(spec.items())
    else:
        require(isinstance(spec, str) and spec.strip(),
                f"strategy {spec!r} is not a name or NAME:WEIGHT list (e.g. 'school:1,self-supervised:0.5')")
        items = []
        for part in spec.split(","):
            name, _, weight = part.strip().partition(":")
            items.append((name.strip(), weight.strip() or 1.0))
    terms = []
    for name, weight in items:
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise SpadeError(f"strategy '{name}' has weight {weight!r}: give a number > 0") from None
        require(w > 0, f"strategy '{name}' has weight {w}: give a number > 0")
        terms.append((name, w))
    names = [n for n, _ in terms]
    require(len(set(names)) == len(names), f"strategy {spec!r} names a strategy twice")
    return terms


def build_strategies(spec, options: dict[str, dict] | None = None) -> list[tuple[float, Strategy]]:
    """``[(weight, strategy), ...]`` from a spec (see :func:`parse_spec`) and per-strategy
    options ``{name: {option: value}}``."""
    options = dict(options or {})
    terms = parse_spec(spec)
    stray = sorted(set(options) - {n for n, _ in terms})
    require(not stray, f"options are given for {stray}, which the strategy {spec!r} does not use")
    return [(w, create_strategy(name, **options.get(name, {}))) for name, w in terms]
