"""``spade models``: list the zoo with default configurations and parameter counts."""
from __future__ import annotations

from ..models import count_parameters, create_model, families
from .common import add_json, emit_json


def add_arguments(p):
    p.description = ("List every model family in each sharing mode with its default "
                     "configuration and parameter count.")
    add_json(p)
    p.set_defaults(handler=run)


def catalogue() -> list[dict]:
    rows = []
    for fam in families().values():
        for preset, changes in fam.presets.items():
            model = create_model(fam.name, **changes)
            rows.append({"name": fam.name, "preset": preset, "sharing": model.config.get("sharing", preset),
                         "params": count_parameters(model), "physics": list(fam.physics),
                         "protocol": fam.protocol, "config": model.config, "description": fam.description})
    return rows


def run(args) -> int:
    rows = catalogue()
    if args.json:
        emit_json(rows)
        return 0
    print(f"{'family':<16} {'sharing':<10} {'params':>10}  physics    description")
    for r in rows:
        print(f"{r['name']:<16} {r['sharing']:<10} {r['params']:>10,}  {','.join(r['physics']):<10} {r['description']}")
    return 0
