"""Import an official release into a SPADE model file."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import require
from ..models.importers import import_ista_net_plus
from ..models.io import save_model

FORMATS = ("ista-net-plus",)


@dataclass(frozen=True)
class ImportJob:
    """``weights`` of release ``format``; CS: ``phi`` + ``qinit`` (.mat); MRI: ``mask``."""

    weights: str
    out: str
    format: str = "ista-net-plus"
    phi: str | None = None
    qinit: str | None = None
    mask: str | None = None
    ratio: float | None = None

    def __post_init__(self):
        require(self.format in FORMATS, f"unknown release format '{self.format}': choose one of {list(FORMATS)}")


def import_file(job: ImportJob) -> dict:
    """Convert and write ``job.out``; returns a summary (family, task, phases, physics, protocol)."""
    model, physics, provenance = import_ista_net_plus(job.weights, phi=job.phi, qinit=job.qinit, mask=job.mask,
                                                      ratio=job.ratio)
    protocol = "ista-cs" if provenance["source"]["task"] == "cs" else "ista-mri"
    spec = save_model(job.out, model, physics, protocol=protocol, **provenance)
    return {"out": job.out, "family": spec["family"], "task": provenance["source"]["task"],
            "phases": provenance["source"]["phases"], "physics": spec["physics"], "protocol": protocol}
