"""``spade prune MODEL --ratio R --out PRUNED``: a smaller model file with the physics intact."""
from __future__ import annotations

from ..data import example_pair, load_images
from ..errors import require
from ..models.io import load_model, save_model
from ..prune import CRITERIA, prune
from ..prune.api import SCOPES, check_settings
from ..prune.data import measurement_batches
from .common import add_device, add_force, add_json, device, emit_json, positive_int, writes_output
from .evaluate import DEFAULT_PROTOCOL

MACS_COUNTER = ("torch.utils.flop_counter FLOPs / 2 for one inference call on the example input: convolutions "
                "and matrix products, the physics' own included; FFTs and element-wise ops not counted")
_SPEC_KEYS = ("format", "version", "family", "config", "shapes", "widths", "physics", "pruning")


def add_parser(sub, name):
    p = sub.add_parser(name, help="remove channels (and iterations) from a model, keeping the physics intact",
                       description="Prune a SPADE model file: remove a fraction of the channels of its CNN priors "
                                   "(and optionally whole iterations) while every channel tied to the physics keeps "
                                   "its width; write a smaller model file.")
    p.add_argument("model", help="SPADE model file")
    p.add_argument("--ratio", type=float, required=True, help="fraction of prunable channels to remove, in [0, 1)")
    p.add_argument("--importance", default="l1", help=f"channel criterion: {', '.join(CRITERIA)} (default l1)")
    p.add_argument("--scope", default="uniform", help=f"{' or '.join(SCOPES)}: every group loses the same "
                                                       "fraction, or channels ranked jointly (default uniform)")
    p.add_argument("--steps", type=positive_int, default=1, help="prune in N steps, re-scoring between (default 1)")
    p.add_argument("--round-to", type=positive_int, default=None, help="round kept widths to a multiple of N")
    p.add_argument("--depth", type=positive_int, default=None, help="also remove K unrolled iterations/stages")
    p.add_argument("--data", help="images measured with the model's physics for taylor/hessian and --depth: a "
                                  "folder, 'embedded', 'embedded-mri' or a benchmark set")
    p.add_argument("--samples", type=positive_int, default=4, help="images of --data to use (default 4)")
    p.add_argument("--protect", nargs="+", default=[], metavar="NAME",
                   help="modules or parameters (dotted names) whose channels must stay")
    p.add_argument("--seed", type=int, default=0, help="seed of the measurement noise and of 'random' (default 0)")
    p.add_argument("--out", required=True, help="the pruned SPADE model file to write")
    add_force(p)
    add_device(p)
    add_json(p)
    p.set_defaults(handler=run)


@writes_output()
def run(args) -> int:
    check_settings(args.ratio, args.importance, args.scope, args.steps, args.round_to, args.depth,
                   data=args.data)
    dev = device(args.device)
    loaded = load_model(args.model, dev)
    physics = loaded.physics
    require(physics is not None, f"model file {args.model} stores no physics to trace the model with")
    x, y = example_pair(physics, batch=1, device=dev)
    example = (y, physics)
    batches = None
    if args.data is not None:
        protocol = loaded.spec.get("protocol") or DEFAULT_PROTOCOL[physics.kind]
        rgb = protocol == "sr" and loaded.model.config.get("image_channels", 1) == 3
        batches = measurement_batches(physics, load_images(args.data, "rgb" if rgb else "y"), protocol,
                                      args.samples, args.seed, dev)
    pruned, record = prune(loaded.model, example, ratio=args.ratio, importance=args.importance, scope=args.scope,
                           steps=args.steps, round_to=args.round_to, depth=args.depth, protect=args.protect,
                           data=batches, seed=args.seed)
    extras = {k: v for k, v in loaded.spec.items() if k not in _SPEC_KEYS}
    entry = {**record.spec_entry(), "data": args.data, "macs_image": list(x.shape), "macs_counter": MACS_COUNTER}
    if loaded.spec.get("pruning"):
        entry["previous"] = loaded.spec["pruning"]
    save_model(args.out, pruned, physics, pruning=entry, **extras)
    summary = {"model": args.model, "out": args.out, **record.to_json(), "macs_image": list(x.shape),
               "macs_counter": MACS_COUNTER}
    summary.pop("history")
    if args.json:
        emit_json(summary)
        return 0
    _print(summary)
    return 0


def _print(s: dict) -> None:
    st = s["settings"]
    print(f"wrote {s['out']}: {st['criterion']}, {st['scope']}, ratio {st['ratio']}"
          + (f", round to {st['round_to']}" if st["round_to"] else "")
          + (f", {st['depth']} {s['depth']['unit']}(s) removed: {s['depth']['removed']}" if s["depth"] else "")
          + f" in {s['seconds']:.2f} s")
    print(f"  params {s['params_before']:,} -> {s['params_after']:,} ({s['params_after'] / s['params_before']:.1%})"
          f"   MACs {s['macs_before'] / 1e9:.3f} G -> {s['macs_after'] / 1e9:.3f} G "
          f"({s['macs_after'] / max(s['macs_before'], 1):.1%}) for one {'x'.join(map(str, s['macs_image']))} image")
    changed = {g: w for g, w in s["groups"].items() if w[0] != w[1]}
    print(f"  {len(changed)} group(s) of layers pruned, {len(s['interfaces'])} kept at full width:")
    for group, reason in s["interfaces"].items():
        print(f"    {group[:70]}: {reason}")
