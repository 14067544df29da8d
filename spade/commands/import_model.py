"""``spade import FORMAT WEIGHTS ... --out MODEL``: convert an official release."""
from __future__ import annotations

from ..jobs import ImportJob, import_file
from ..jobs.importing import FORMATS
from .common import add_force, add_json, emit_json, writes_output


def add_arguments(p):
    p.description = ("Convert an official release into a SPADE model file (spec + weights). "
                     "CS: --phi PHI.mat --qinit QINIT.mat; MRI: --mask MASK.mat.")
    p.add_argument("format", choices=FORMATS, help="the release format")
    p.add_argument("weights", help="the official weights file (e.g. net_params_200.pkl)")
    p.add_argument("--phi", help="sampling matrix .mat (key 'phi'), for compressive sensing")
    p.add_argument("--qinit", help="initialisation matrix .mat (key 'Qinit'), for compressive sensing")
    p.add_argument("--mask", help="k-space mask .mat (key 'mask_matrix') or .npy, for MRI")
    p.add_argument("--ratio", type=float, help="expected CS sampling ratio (fraction), checked against Phi")
    p.add_argument("--out", required=True, help="the SPADE model file to write")
    add_force(p)
    add_json(p)
    p.set_defaults(handler=run)


@writes_output(inputs=("weights", "phi", "qinit", "mask"))
def run(args) -> int:
    summary = import_file(ImportJob(args.weights, args.out, args.format, phi=args.phi, qinit=args.qinit,
                                    mask=args.mask, ratio=args.ratio))
    if args.json:
        emit_json(summary)
    else:
        settings = summary["physics"]["settings"]
        print(f"wrote {args.out}: ISTA-Net+ {summary['phases']} phases, {summary['task']} "
              f"({', '.join(f'{k}={v}' for k, v in settings.items())}), protocol {summary['protocol']}")
    return 0
