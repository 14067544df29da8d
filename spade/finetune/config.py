"""Settings of a training run, validated with messages that name the allowed values.

=================  =========  ==============================================================
key                default    meaning
=================  =========  ==============================================================
steps              --         optimisation steps (or ``epochs``; exactly one of the two)
epochs             --         passes over the data (patches, or the fixed measurement batches)
batch              4          global batch (split over the processes of a distributed run)
lr                 1e-4       learning rate
optimizer          adam       ``adam`` or ``adamw``
weight_decay       0          (decoupled for adamw)
schedule           cosine     ``cosine`` (to ``min_lr``), ``step`` (x ``gamma`` every
                              ``step_size`` steps, default steps // 3) or ``constant``
min_lr             0          final learning rate of the cosine schedule
step_size          0          period of the step schedule (0: steps // 3)
gamma              0.1        factor of the step schedule
clip               0          gradient-norm clipping (0: none)
checkpoint_every   0          steps between checkpoints (0: steps // 10, at least 1)
val_every          0          steps between validations (0: only at the end)
patience           0          validations without improvement before stopping (0: never)
seed               0          seeds data order, patches, noise, transforms and the model
patch              0          patch side for patch data (0: CS 99, SR 96, MRI the mask side)
patches            0          distinct patches (sparse recovery: codes) per epoch (0: steps x
                              batch, 1024 with epochs)
augment            true       random flips/rotations of patches
noise_level        physics'   measurement noise standard deviation
regularizer        true       add the model's own training penalty (``aux["regularizer"]``)
data_mode          auto       ``patches`` (random patches measured on the fly),
                              ``measurements`` (the images measured once, whole), or ``auto``:
                              patches if a strategy uses ground truth, else measurements;
                              sparse recovery always trains on fresh codes (patches)
=================  =========  ==============================================================
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import require
from ..limits import check_count

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")
DATA_MODES = ("auto", "patches", "measurements")


@dataclass
class TrainConfig:
    steps: int | None = None
    epochs: int | None = None
    batch: int = 4
    lr: float = 1e-4
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "cosine"
    min_lr: float = 0.0
    step_size: int = 0
    gamma: float = 0.1
    clip: float = 0.0
    checkpoint_every: int = 0
    val_every: int = 0
    patience: int = 0
    seed: int = 0
    patch: int = 0
    patches: int = 0
    augment: bool = True
    noise_level: float | None = None
    regularizer: bool = True
    data_mode: str = "auto"

    @classmethod
    def from_mapping(cls, values: dict, where: str = "settings") -> "TrainConfig":
        """Build and validate from a dict (a recipe table, keyword arguments)."""
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(allowed))
        require(not unknown, f"{where} has no key {unknown}: allowed are {allowed}")
        config = cls(**values)
        config.validate(where)
        return config

    def validate(self, where: str = "settings") -> None:
        def whole(name, low):
            v = getattr(self, name)
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= low
            require(ok, f"{where}: {name} = {v!r} must be a whole number >= {low}")

        def number(name, low, strict=False):
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (v > low if strict else v >= low)
            require(ok, f"{where}: {name} = {v!r} must be a number {'>' if strict else '>='} {low}")

        def choice(name, options):
            v = getattr(self, name)
            require(v in options, f"{where}: {name} = {v!r} is not one of {list(options)}")

        require((self.steps is None) != (self.epochs is None),
                f"{where}: give exactly one of steps and epochs (got steps={self.steps}, epochs={self.epochs})")
        whole("steps" if self.steps is not None else "epochs", 1)
        whole("batch", 1)
        for name in ("step_size", "checkpoint_every", "val_every", "patience", "seed", "patch", "patches"):
            whole(name, 0)
        check_count(self.batch, "MAX_BATCH", f"{where}: batch")
        check_count(self.patch, "MAX_IMAGE_SIDE", f"{where}: patch", minimum=0)
        check_count(self.patches, "MAX_SAMPLES", f"{where}: patches", minimum=0)
        number("lr", 0, strict=True)
        for name in ("weight_decay", "min_lr", "clip"):
            number(name, 0)
        number("gamma", 0, strict=True)
        if self.noise_level is not None:
            number("noise_level", 0)
        choice("optimizer", OPTIMIZERS)
        choice("schedule", SCHEDULES)
        choice("data_mode", DATA_MODES)
        for name in ("augment", "regularizer"):
            require(isinstance(getattr(self, name), bool), f"{where}: {name} must be true or false")
        if self.schedule == "cosine":
            require(self.min_lr <= self.lr, f"{where}: min_lr = {self.min_lr} exceeds lr = {self.lr}")

    def fingerprint(self) -> dict:
        """The settings a resumed run must share with the run it continues."""
        return dataclasses.asdict(self)
