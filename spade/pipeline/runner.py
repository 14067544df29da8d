"""Run a pipeline recipe stage by stage, resumably.

Stages, each writing its outputs atomically under ``OUT`` (so a killed run resumes at
the first missing output; a fine-tuning run resumes from its checkpoint)::

    OUT/recipe.toml                  the recipe, as given (a resumed run must match it)
    OUT/models/NAME.spade            sources: imported, trained (OUT/train/NAME/), distilled
    OUT/models/NAME-r50[-dK].spade   pruned: ratio 0.5 (and K iterations removed)
    OUT/models/NAME-r50-STRATEGY.spade   fine-tuned
    OUT/results/                     evaluated + profiled (spade.report run directory)
    OUT/budget.json                  latency-budget mode: the chosen model
    REPORT/                          spade report (default OUT/report)

Every model-producing stage is the matching ``spade`` sub-command, so a pipeline does
exactly what the commands do.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable

import torch

from ..errors import SpadeError, require
from ..fileio import write_text
from ..models import create_model, get_family, load_model, save_model
from ..report import write_report
from ..report.collect import collect_run
from ..report.results import read_records, write_run_info
from .recipe import read_pipeline_recipe, strategy_slug


def _command(argv: list[str]) -> None:
    """Run one ``spade`` sub-command in-process; its errors propagate as SpadeError."""
    from ..cli import build_parser
    args = build_parser().parse_args(argv)
    args.handler(args)


class Pipeline:
    """One recipe run into ``out``; :meth:`run` executes the stages."""

    def __init__(self, recipe_path: str | Path, out: str | Path, resume: bool = False, report: str | Path | None = None,
                 device: str = "cpu", progress: bool = True, log: Callable[[str], None] = print):
        self.recipe = read_pipeline_recipe(recipe_path)
        self.out, self.device, self.progress, self.log = Path(out), device, progress, log
        self.report_dir = Path(report or self.recipe["report"].get("out") or self.out / "report")
        self.models_dir = self.out / "models"
        self._check_out(resume)
        self._start = time.monotonic()

    def _check_out(self, resume: bool) -> None:
        saved = self.out / "recipe.toml"
        if resume:
            require(saved.is_file(), f"{self.out} holds no pipeline run to resume: run without --resume")
            require(saved.read_text() == self.recipe["text"],
                    f"the recipe differs from the one {self.out} was started with: use a new --out")
        else:
            require(not self.out.exists() or (self.out.is_dir() and not any(self.out.iterdir())),
                    f"{self.out} exists and is not empty: give --resume to continue that run, or a new --out")

    # -- helpers ---------------------------------------------------------------------------
    def _common(self, finetuning: bool = False) -> list[str]:
        flags = ["--device", self.device]
        return flags + (["--no-progress"] if finetuning and not self.progress else [])

    def _path(self, name: str) -> Path:
        return self.models_dir / f"{name}.spade"

    @staticmethod
    def _resume_flag(out: Path) -> list[str]:
        """``--resume`` when ``spade finetune --out OUT`` left a checkpoint (OUT.ckpt)."""
        return ["--resume"] if out.with_name(out.name + ".ckpt").exists() else []

    def _stage(self, what: str, target: Path, action: Callable[[], None]) -> Path:
        if target.exists():
            self.log(f"  {what}: {target} exists, kept")
            return target
        self.log(f"  {what} -> {target} [{self._elapsed()}]")
        action()
        require(target.exists(), f"{what} finished without writing {target}")
        return target

    def _elapsed(self) -> str:
        seconds = int(time.monotonic() - self._start)
        return f"{seconds // 60}:{seconds % 60:02d} elapsed"

    # -- stages ----------------------------------------------------------------------------
    def sources(self) -> dict[str, Path]:
        """Every model of the recipe as a model file (distilled models after their teachers)."""
        self.log("[1/5] models")
        files: dict[str, Path] = {}
        ordered = sorted(self.recipe["models"], key=lambda m: "distill" in m)
        for m in ordered:
            name = m["name"]
            if "file" in m:
                load_model(m["file"])  # fail early on a bad file
                files[name] = Path(m["file"])
                self.log(f"  {name}: {m['file']}")
            elif "import" in m:
                imp = m["import"]
                argv = ["import", "ista-net-plus", imp["weights"], "--out", str(self._path(name))]
                for key in ("phi", "qinit", "mask", "ratio"):
                    if key in imp:
                        argv += [f"--{key}", str(imp[key])]
                files[name] = self._stage(f"import {name}", self._path(name), lambda: _command(argv))
            elif "train" in m:
                run_dir = self.out / "train" / name
                argv = ["train", m["train"], "--out", str(run_dir)] + self._common(True)
                if (run_dir / "checkpoint.pt").exists():
                    argv.append("--resume")
                files[name] = self._stage(f"train {name}", run_dir / "model.spade", lambda: _command(argv))
            else:
                files[name] = self._stage(f"distill {name}", self._path(name),
                                          lambda: self._distill(m, files[m["distill"]["teacher"]]))
        return files

    def _distill(self, m: dict, teacher: Path) -> None:
        d = m["distill"]
        loaded = load_model(teacher)
        family = get_family(d["family"])
        # the teacher's configuration (problem settings such as block size) when the family
        # is the same, then the preset (the sharing mode)
        cfg = dict(loaded.model.config) if loaded.spec["family"] == family.name else {}
        cfg.update(family.presets[d["preset"]] if "preset" in d else {})
        init = self.models_dir / f"{m['name']}.init.spade"
        if not init.exists():
            torch.manual_seed(d.get("seed", 0))  # the same recipe gives the same initialisation
            save_model(init, create_model(family.name, **cfg), loaded.physics,
                       protocol=loaded.spec.get("protocol"))
        argv = ["finetune", str(init), "--strategy", "school", "--teacher", str(teacher), "--data", d["data"],
                "--data-mode", "patches", "--steps", str(d["steps"]), "--out", str(self._path(m["name"]))]
        for key in ("batch", "lr", "patch", "seed"):
            if key in d:
                argv += [f"--{key}", str(d[key])]
        argv += self._resume_flag(self._path(m["name"]))
        _command(argv + self._common(True))
        init.unlink()

    def pruned(self, files: dict[str, Path]) -> list[dict]:
        """Prune every unpruned model at every ratio; fine-tune each with every strategy."""
        p = self.recipe["prune"]
        strategies = self.recipe["strategies"]
        entries = []
        units = [(m, r, d) for m in self.recipe["models"] if m["role"] == "unpruned"
                 for r, d in zip(p["ratios"], p["depth"])]
        self.log(f"[2/5] prune: {len(units)} model(s) x ratio; [3/5] fine-tune: {len(strategies)} strateg(ies) each")
        for m, ratio, depth in units:
            name = f"{m['name']}-r{round(ratio * 100):02d}" + (f"-d{depth}" if depth else "")
            argv = ["prune", str(files[m["name"]]), "--ratio", str(ratio), "--importance", p["importance"],
                    "--scope", p["scope"], "--out", str(self._path(name))] + self._common()
            if depth:
                argv += ["--depth", str(depth)]
            for key in ("steps", "round_to", "samples", "seed"):
                if key in p:
                    argv += [f"--{key.replace('_', '-')}", str(p[key])]
            if p["importance"] in ("taylor", "hessian") or depth:
                argv += ["--data", p.get("data") or m["train_data"]]
            pruned = self._stage(f"prune {m['name']} at {ratio}", self._path(name), lambda: _command(argv))
            base = {"parent": m["name"], "ratio": ratio, "importance": p["importance"], "data": m["test"],
                    "protocol": m["protocol"]}
            entries.append({**base, "path": str(pruned), "name": name, "role": "pruned", "strategy": None})
            for strategy, settings in strategies.items():
                entries.append({**base, **self._finetune(pruned, f"{name}-{strategy_slug(strategy)}", strategy,
                                                         settings, m, files[m["name"]]),
                                "role": "pruned", "strategy": strategy})
        return entries

    def _finetune(self, pruned: Path, name: str, strategy: str, settings: dict, m: dict, teacher: Path) -> dict:
        parts = [s.split(":")[0] for s in strategy.split(",")]
        data = m["train_data"] if "supervised" in parts else m["test"]
        argv = ["finetune", str(pruned), "--strategy", strategy, "--data", data, "--out", str(self._path(name))]
        if "school" in parts:
            argv += ["--teacher", str(teacher)]
        for key, value in settings.items():
            argv += [f"--{key.replace('_', '-')}", ",".join(value) if isinstance(value, list) else str(value)]
        argv += self._resume_flag(self._path(name))
        self._stage(f"fine-tune {pruned.stem} with {strategy} on {data}", self._path(name),
                    lambda: _command(argv + self._common(True)))
        return {"path": str(self._path(name)), "name": name}

    def collect(self, files: dict[str, Path], pruned: list[dict]) -> Path:
        """Evaluate and profile every model into OUT/results (one interleaved profile per family)."""
        results = self.out / "results"
        self.log(f"[4/5] evaluate and profile [{self._elapsed()}]")
        entries = [{"path": str(files[m["name"]]), "name": m["name"], "role": m["role"], "data": m["test"],
                    "protocol": m["protocol"], "ratio": None, "importance": None, "strategy": None}
                   for m in self.recipe["models"]]
        entries += pruned
        done = results / "results.jsonl"
        if done.is_file():
            collected = done.stat().st_mtime_ns
            rebuilt = [Path(e["path"]).name for e in entries if Path(e["path"]).stat().st_mtime_ns > collected]
            if not rebuilt:
                self.log(f"  {results} exists, kept")
                return results
            self.log(f"  {', '.join(rebuilt)} rebuilt after {results}: every model evaluated and profiled again")
            shutil.rmtree(results)
        prof = self.recipe["profile"]
        collect_run(results, entries, data=None, backends=prof["backends"], threads=prof.get("threads", 2),
                    batch=prof.get("batch", 1), side=prof.get("side"), rounds=prof.get("rounds", 15),
                    min_run_time=prof.get("min_run_time", 1.0), title=self.recipe["title"],
                    log=lambda msg: self.log(f"  {msg}"))
        return results

    def budget(self, results: Path) -> dict | None:
        """Latency-budget mode: the best-PSNR pruned model at least ``speedup`` x faster."""
        b = self.recipe["budget"]
        if not b:
            return None
        candidates = []
        for r in read_records(results):
            lat = next((entry for entry in r["latency"] or [] if entry["backend"] == b["backend"]), None)
            psnr = (r["evaluation"] or {}).get("psnr")
            if r["role"] != "pruned" or lat is None or lat.get("speedup_vs_unpruned") is None or psnr is None:
                continue
            candidates.append({"model": r["name"], "psnr": psnr, "speedup_vs_unpruned": lat["speedup_vs_unpruned"],
                               "speedup_vs_recursive": lat.get("speedup_vs_recursive"), "macs": r["macs"],
                               "meets": lat["speedup_vs_unpruned"] >= b["speedup"]})
        meeting = [c for c in candidates if c["meets"]]
        chosen = max(meeting, key=lambda c: c["psnr"]) if meeting else None
        fastest = max(candidates, key=lambda c: c["speedup_vs_unpruned"], default=None)
        outcome = {"target_speedup": b["speedup"], "backend": b["backend"], "chosen": chosen,
                   "fastest": fastest, "candidates": sorted(candidates, key=lambda c: -c["psnr"])}
        write_text(self.out / "budget.json", json.dumps(outcome, indent=1) + "\n")
        if chosen:
            line = (f"latency budget {b['speedup']:g}x ({b['backend']}): {chosen['model']}, "
                    f"{chosen['speedup_vs_unpruned']:.2f}x faster, {chosen['psnr']:.2f} dB")
        else:
            best = f"{fastest['speedup_vs_unpruned']:.2f}x ({fastest['model']})" if fastest else "none"
            line = f"latency budget {b['speedup']:g}x ({b['backend']}): no pruned model meets it; the fastest is {best}"
        self.log(f"  {line}")
        outcome["line"] = line
        return outcome

    def run(self) -> dict:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        write_text(self.out / "recipe.toml", self.recipe["text"])
        files = self.sources()
        pruned = self.pruned(files)
        results = self.collect(files, pruned)
        budget = self.budget(results)
        notes = " ".join(filter(None, [self.recipe["notes"], budget["line"] + "." if budget else ""]))
        write_run_info(results, self.recipe["title"], notes)
        self.log(f"[5/5] report -> {self.report_dir} [{self._elapsed()}]")
        written = write_report(results, self.report_dir)
        return {"out": str(self.out), "results": str(results), "report": written["out"],
                "models": len(read_records(results)), "budget": budget}


def run_pipeline(recipe: str | Path, out: str | Path, **kwargs) -> dict:
    """Run (or with ``resume=True`` continue) a recipe; returns where everything went."""
    try:
        return Pipeline(recipe, out, **kwargs).run()
    except SystemExit as exc:  # argparse rejected a value built from the recipe
        raise SpadeError(f"a stage rejected its arguments (exit {exc.code}); see the message above") from None
