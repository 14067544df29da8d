"""Run a pipeline recipe stage by stage, resumably.

Stages, each writing its outputs atomically under ``OUT`` (so a killed run resumes at
the first missing output; a fine-tuning run resumes from its checkpoint)::

    OUT/recipe.toml                  the recipe, as given (a resumed run may change only sections whose stages have not run)
    OUT/models/NAME.spade            sources: imported, trained (OUT/train/NAME/), distilled
    OUT/models/NAME-r50[-dK].spade   pruned: ratio 0.5 (and K iterations removed)
    OUT/models/NAME-r50-STRATEGY.spade   fine-tuned
                                     (a recipe's own network, function = "MODULE:FUNCTION":
                                     NAME-r50.pt, NAME-r50-STRATEGY.pt, used as MODULE:FUNCTION@FILE)
    OUT/quantized/NAME-int8.onnx     [quantize]: INT8 priors, physics in float (spade quantize),
    OUT/quantized/NAME-int8.json       and its report (scores, interleaved timings)
    OUT/results/                     evaluated + profiled (spade.report run directory)
    OUT/budget.json                  latency-budget mode: the chosen model
    REPORT/                          spade report (default OUT/report)

Every model-producing stage calls the job function (:mod:`spade.jobs`) that the matching
``spade`` sub-command calls, with settings built from the recipe, so a pipeline does exactly
what the commands do. Fine-tuning uses the training images (checked disjoint from the test
images before anything is written) unless the recipe asks for test-time adaptation.
"""
from __future__ import annotations

import json
import re
import shutil
import time
import tomllib
from pathlib import Path
from typing import Callable

import torch

from ..data import check_disjoint, load_images
from ..errors import require
from ..fileio import write_text
from ..finetune.loop import TEST_TIME
from ..jobs import (FinetuneJob, ImportJob, LatencyTarget, PruneJob, TrainJob, finetune_file, import_file, prune_file,
                   train_recipe)
from ..models import (ReconstructionNet, create_model, get_family, is_factory, load_model, model_name, save_model,
                      source_name, split_source)
from ..models.adapter import importable_from
from ..prune import load_own
from ..profile.quantize import quantize_file
from ..progress import duration
from ..progress import enabled as progress_enabled
from ..progress import is_enabled as progress_is_enabled
from ..report.render import write_report
from ..report.collect import collect_run
from ..report.results import read_records, write_run_info
from .budget import choose_within_budget
from .eta import Estimator, Unit
from .recipe import read_pipeline_recipe, strategy_slug


class Pipeline:
    """One recipe run into ``out``; :meth:`run` executes the stages."""

    def __init__(self, recipe_path: str | Path, out: str | Path, resume: bool = False, report: str | Path | None = None,
                 device: str = "cpu", progress: bool = True, log: Callable[[str], None] = print):
        self.recipe = read_pipeline_recipe(recipe_path)
        self.folder = Path(self.recipe["path"]).parent  # a recipe's own networks are imported from here first
        self.out, self.device, self.progress, self.log = Path(out), device, progress, log
        self.report_dir = Path(report or self.recipe["report"].get("out") or self.out / "report")
        self.models_dir = self.out / "models"
        self._check_out(resume)
        self.eta = Estimator(profile=self.recipe["profile"], pruning=self.recipe["prune"])
        with importable_from(self.folder):
            self._check_inputs(check=not resume)
        self.units = self._plan()
        self._said = ""
        self._start = time.monotonic()

    def _check_out(self, resume: bool) -> None:
        saved = self.out / "recipe.toml"
        if resume:
            require(saved.is_file(), f"{self.out} holds no pipeline run to resume: run without --resume")
            if saved.read_text() != self.recipe["text"]:
                self._accept_changes(tomllib.loads(saved.read_text()))
        else:
            # a run stopped before its first output holds its recipe only: it starts afresh
            held = [p for p in self.out.rglob("*") if p.is_file() and p != saved] if self.out.is_dir() else []
            require(not self.out.exists() or (self.out.is_dir() and not held),
                    f"{self.out} exists and is not empty: give --resume to continue that run, or a new --out")

    def _accept_changes(self, before: dict) -> None:
        """A resumed run whose recipe changed: accepted when every changed section only
        drives stages that have not written anything yet; otherwise one line naming the
        changed sections and the outputs to remove first (or a new --out)."""
        after = tomllib.loads(self.recipe["text"])
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        made = {k: self._outputs_of(k) for k in changed}
        blocking = sorted({str(p) for paths in made.values() for p in paths})
        where = ", ".join(f"[{k}]" if isinstance(after.get(k, before.get(k)), (dict, list)) else k for k in changed)
        require(not blocking, f"the recipe differs from the one {self.out} was started with in {where}: remove what "
                              f"those settings made ({', '.join(blocking[:6])}{', ...' if len(blocking) > 6 else ''}) "
                              "and resume, or use a new --out")
        self.log(f"recipe changed in {where}: only stages not run yet are affected")

    def _outputs_of(self, section: str) -> list[Path]:
        """The existing outputs of the stages a recipe section drives."""
        results = [self.out / "results"]
        pruned = sorted(p for p in self.models_dir.glob("*") if re.search(r"-(r\d\d|s\d{3,})", p.stem))
        by_section = {
            "prune": pruned + results,
            "finetune": [p for p in pruned if re.search(r"-(r\d\d|s\d{3,})(-d\d+)?-", p.stem)] + results,
            "quantize": [self.out / "quantized"] + results, "profile": results, "title": results, "notes": results,
            "budget": [self.out / "budget.json"], "report": []}
        everything = [p for p in self.out.iterdir() if p.name != "recipe.toml"]
        return [p for p in by_section.get(section, everything) if p.exists()]

    def _check_inputs(self, check: bool = True) -> None:
        """Before anything is written: model files load, every test and training source
        loads, and fine-tuning and calibration images are not test images (``check``; a
        resumed run was checked when it started). The test images' sizes go to the time
        estimate."""
        calibration = self.recipe["quantize"].get("data") if check else None
        calibration = load_images(calibration) if calibration else None
        for m in self.recipe["models"]:
            if check and "file" in m:
                load_model(m["file"])
            elif "function" in m:
                load_own(m["function"]).require_physics(f"models '{m['name']}' (evaluated and fine-tuned here)")
            test = load_images(m["test"])
            self.eta.test_shapes[m["name"]] = [img.shape for img in test]
            self.eta.test_pixels[m["name"]] = sum(img.shape[0] * img.shape[1] for img in test)
            if check and m["train_data"] and m["role"] == "unpruned":
                check_disjoint(load_images(m["train_data"]), test)
            if calibration is not None:
                check_disjoint(calibration, test)

    # -- the time estimate -----------------------------------------------------------------
    def _plan(self) -> list[Unit]:
        """Every stage of the run as a unit of work, in the order they run; those whose
        output exists (a resumed run) are done."""
        units = []
        for m in sorted(self.recipe["models"], key=lambda m: "distill" in m):
            if "train" in m:
                job = TrainJob(m["train"], str(self.out / "train" / m["name"]))
                units.append(Unit("train", m["name"], job.sections[1].get("steps"), target=job.model_file))
            elif "distill" in m:
                units.append(Unit("distill", m["name"], m["distill"]["train"].steps, target=self._path(m["name"])))
            elif "import" in m:
                units.append(Unit("import", m["name"], target=self._path(m["name"])))
        q = self.recipe["quantize"]
        int8 = [m["name"] for m in self.recipe["models"]] if q and q["models"] == "all" else []
        for m in self._unpruned():
            own = "function" in m
            for ratio, depth, speedup in self._sweep():
                name = self._pruned_name(m, ratio, depth, speedup)
                units.append(Unit("prune", m["name"], target=self._path(name, own)))
                units += [Unit("finetune", m["name"], settings["train"].steps, strategy,
                               target=self._path(f"{name}-{strategy_slug(strategy)}", own))
                          for strategy, settings in self.recipe["strategies"].items()]
                int8 += [name] + [f"{name}-{strategy_slug(s)}" for s in self.recipe["strategies"]] if q else []
        units += [Unit("quantize", n, target=self.out / "quantized" / f"{n}-int8.json") for n in int8]
        units += [Unit("collect", "", target=self.out / "results" / "results.jsonl"), Unit("report", "")]
        for u in units:
            u.done = u.target is not None and u.target.exists()
        # the results are collected again when any model is (re)built
        units[-2].done = units[-2].done and all(u.done for u in units[:-2])
        return units

    def _sweep(self) -> list[tuple[float, int, float | None]]:
        """``(ratio, depth, speedup)`` of every pruned model of a model: the ratios, then
        the latency targets (ratio 0 until the plan has chosen the widths)."""
        p = self.recipe["prune"]
        return [(r, d, None) for r, d in zip(p["ratios"], p["depth"])] + [(0.0, 0, s) for s in p["speedups"]]

    @staticmethod
    def _pruned_name(m: dict, ratio: float, depth: int, speedup: float | None = None) -> str:
        if speedup is not None:
            return f"{m['name']}-s{round(speedup * 100):03d}"
        return f"{m['name']}-r{round(ratio * 100):02d}" + (f"-d{depth}" if depth else "")

    def _unit(self, target: Path) -> Unit:
        return next(u for u in self.units if u.target == target)

    def _unpruned(self) -> list[dict]:
        return [m for m in self.recipe["models"] if m["role"] == "unpruned"]

    def _family_sizes(self) -> dict[str, int]:
        """Models evaluated and timed, by the model whose probe stands for them."""
        per = 1 + len(self.recipe["strategies"])
        return {m["name"]: 1 + (per * len(self._sweep()) if m["role"] == "unpruned" else 0)
                for m in self.recipe["models"]}

    def _probe(self) -> None:
        """Probe every model that can be probed now and was not (:mod:`.eta`): those a
        training recipe builds, model files, imported models once imported."""
        first = next(iter(self.recipe["strategies"].values()), None)
        batch, patch = (first["train"].batch, first["train"].patch) if first else (1, 0)
        for m in sorted(self.recipe["models"], key=lambda m: "distill" in m):  # teachers first
            name = m["name"]
            file = Path(m["file"]) if "file" in m else self._path(name) if "import" in m else None
            if name in self.eta.probes:
                continue
            if "train" in m:
                self.eta.probe_recipe(name, m["train"])
            elif file is not None and file.exists():
                self.eta.probe_file(name, file, batch, patch)
            elif "distill" in m and m["distill"]["teacher"] in self.eta.probes:
                # school on the teacher's physics: the teacher's pass stands for the student's
                self.eta.probes[name] = self.eta.probes[m["distill"]["teacher"]]

    def _remaining(self) -> str:
        return self.eta.remaining(self.units, self._family_sizes())

    def _say_remaining(self) -> None:
        """Before a stage: what remains and how long it should take (when that changed)."""
        line = self._remaining()
        if line != self._said:
            self.log(f"  {line}")
        self._said = line

    # -- helpers ---------------------------------------------------------------------------
    def _finetune(self, job: FinetuneJob) -> None:
        finetune_file(job, self.device, resume=job.checkpoint.exists(), progress=self.progress, log=self.log)

    def _path(self, name: str, own: bool = False) -> Path:
        return self.models_dir / f"{name}{'.pt' if own else '.spade'}"

    @staticmethod
    def _source(m: dict, path: Path) -> str:
        """How the later stages name a model written at ``path`` for recipe model ``m``."""
        return f"{m['function']}@{path}" if "function" in m else str(path)

    def _stage(self, what: str, target: Path, action: Callable[[], None]) -> Path:
        unit = self._unit(target)
        if target.exists():
            self.log(f"  {what}: {target} exists, kept")
            unit.done = True
            return target
        self._say_remaining()
        self.log(f"  {what} -> {target} [{self._elapsed()}]")
        began = time.monotonic()
        action()
        require(target.exists(), f"{what} finished without writing {target}")
        self.eta.finished(unit, time.monotonic() - began)
        return target

    def _elapsed(self) -> str:
        seconds = int(time.monotonic() - self._start)
        return f"{seconds // 60}:{seconds % 60:02d} elapsed"

    # -- stages ----------------------------------------------------------------------------
    def sources(self) -> dict[str, Path | str]:
        """Every model of the recipe as a model file or MODULE:FUNCTION (distilled models
        after their teachers)."""
        self.log("[1/5] models")
        files: dict[str, Path | str] = {}
        ordered = sorted(self.recipe["models"], key=lambda m: "distill" in m)
        for m in ordered:
            name = m["name"]
            if "file" in m:
                files[name] = Path(m["file"])
                self.log(f"  {name}: {m['file']}")
            elif "function" in m:
                files[name] = m["function"]
                self.log(f"  {name}: {m['function']}")
            elif "import" in m:
                job = ImportJob(out=str(self._path(name)), **m["import"])
                files[name] = self._stage(f"import {name}", self._path(name), lambda: import_file(job))
                with torch.random.fork_rng():
                    self._probe()
            elif "train" in m:
                job = TrainJob(m["train"], str(self.out / "train" / name))
                files[name] = self._stage(f"train {name}", job.model_file, lambda: train_recipe(
                    job, self.device, resume=job.checkpoint.exists(), progress=self.progress, log=self.log))
            else:
                files[name] = self._stage(f"distill {name}", self._path(name),
                                          lambda: self._distill(m, files[m["distill"]["teacher"]]))
        return files

    def _distill(self, m: dict, teacher: Path | str) -> None:
        d = m["distill"]
        loaded = load_own(teacher) if is_factory(teacher) else load_model(teacher)
        family = get_family(d["family"])
        # the teacher's configuration (problem settings such as block size) when the family
        # is the same, then the preset (the sharing mode)
        cfg = dict(loaded.model.config) if loaded.spec["family"] == family.name else {}
        cfg.update(family.presets[d["preset"]] if "preset" in d else {})
        init = self.models_dir / f"{m['name']}.init.spade"
        if not init.exists():
            torch.manual_seed(d.get("seed", 0))  # the same recipe gives the same initialisation
            student = create_model(family.name, **cfg)
            if d["init"] == "teacher":
                require(loaded.spec["family"] == family.name and isinstance(loaded.model, ReconstructionNet),
                        f"models '{m['name']}': distill init = \"teacher\" needs a teacher of family {family.name}")
                picks = student.inherit_blocks(loaded.model)
                self.log(f"  {m['name']}: blocks start from the teacher's blocks {picks}")
            save_model(init, student, loaded.physics, protocol=loaded.spec.get("protocol"))
        self._finetune(FinetuneJob(str(init), str(self._path(m["name"])), "school", d["data"], d["train"],
                                   teacher=str(teacher), iterates=float(d["iterates"]) or None))
        init.unlink()

    def pruned(self, files: dict[str, Path]) -> list[dict]:
        """Prune every unpruned model at every ratio; fine-tune each with every strategy.
        Progressive: each ratio prunes the model the first strategy fine-tuned at the ratio
        before (prune a step, recover, prune again), the teacher staying the unpruned model."""
        p = self.recipe["prune"]
        strategies = self.recipe["strategies"]
        entries = []
        units = [(m, r, d, s) for m in self.recipe["models"] if m["role"] == "unpruned" for r, d, s in self._sweep()]
        self.log(f"[2/5] prune: {len(units)} model(s) x ratio{' (progressive)' if p['progressive'] else ''}; "
                 f"[3/5] fine-tune: {len(strategies)} strateg(ies) each")
        previous: dict[str, tuple[Path, float, str]] = {}  # model -> (file to prune next, its ratio, its data)
        for m, ratio, depth, speedup in units:
            source, done, source_data = previous.get(m["name"], (files[m["name"]], 0.0, "none"))
            name = self._pruned_name(m, ratio, depth, speedup)
            uses_data = p["importance"] in ("taylor", "hessian") or depth or p["reconstruct"] or p["depth_refit"]
            data = (p.get("data") or m["train_data"]) if uses_data else None
            step = 1 - (1 - ratio) / (1 - done)  # of the channels left, to reach ``ratio`` of the original's
            out = self._path(name, "function" in m)
            job = PruneJob(str(source), str(out), step, importance=p["importance"],
                           scope=p["scope"], depth=depth or None, data=data, reconstruct=p["reconstruct"],
                           depth_refit=p["depth_refit"],
                           crop=p["crop"], ridge=p["ridge"], latency=self._latency_target(speedup),
                           **{k: p[k] for k in ("steps", "round_to", "samples", "seed") if k in p})
            what = f"to {speedup:g}x faster" if speedup else f"at {ratio}"
            pruned = self._stage(f"prune {self._label(source)} {what}", out, lambda: prune_file(job, self.device))
            base = {"parent": m["name"], "importance": p["importance"], "data": m["test"], "protocol": m["protocol"]}
            if not speedup:  # a plan's share of channels removed and its target: read from the spec when collected
                base["ratio"] = ratio
            entries.append({**base, "path": self._source(m, pruned), "name": name, "role": "pruned", "strategy": None,
                            "finetune_data": source_data})
            for i, (strategy, settings) in enumerate(strategies.items()):
                tuned = self._finetune_pruned(pruned, f"{name}-{strategy_slug(strategy)}", strategy, settings, m,
                                              files[m["name"]])
                entries.append({**base, **tuned, "role": "pruned", "strategy": strategy})
                if p["progressive"] and i == 0:
                    previous[m["name"]] = (tuned["path"], ratio, tuned["finetune_data"])
        return entries

    def _latency_target(self, speedup: float | None) -> LatencyTarget | None:
        """A latency target measured with the recipe's profiling threads (rounds and block
        time at most the prune command's defaults), its table kept in OUT."""
        if speedup is None:
            return None
        prof, default = self.recipe["profile"], LatencyTarget(speedup=2.0)
        return LatencyTarget(speedup=speedup, table=str(self.out / "latency-table.json"),
                             threads=prof.get("threads", 2), rounds=min(prof.get("rounds", 15), default.rounds),
                             min_run_time=min(prof.get("min_run_time", 1.0), default.min_run_time),
                             depth=self.recipe["prune"]["plan_depth"])

    @staticmethod
    def _label(source: Path | str) -> str:
        return source_name(str(source)) if is_factory(source) else model_name(source)

    def _finetune_pruned(self, pruned: Path, name: str, strategy: str, settings: dict, m: dict,
                         teacher: Path | str) -> dict:
        test_time = settings["test_time"]
        data = m["test"] if test_time else m["train_data"]
        names = strategy_slug(strategy).split("+")
        out = self._path(name, "function" in m)
        job = FinetuneJob(self._source(m, pruned), str(out), strategy, data, settings["train"],
                          teacher=str(teacher) if "school" in names else None, loss=settings.get("loss"),
                          iterates=settings.get("iterates"), transforms=settings.get("transforms", ()),
                          test_time=test_time)
        used = f"the test measurements of {data} (test-time adaptation)" if test_time else data
        self._stage(f"fine-tune {self._label(pruned)} with {strategy} on {used}", out, lambda: self._finetune(job))
        return {"path": self._source(m, out), "name": name,
                "finetune_data": TEST_TIME if test_time else f"train:{data}"}

    def quantized(self, files: dict[str, Path], pruned: list[dict]) -> list[dict]:
        """[quantize]: INT8 priors for every pruned model (and the recipe's own models with
        ``models = "all"``), each calibrated on training images, scored on its test images
        and timed against its unpruned model (eager and float ONNX Runtime) interleaved;
        returns ``{"source", "name", "report"}`` per INT8 model."""
        q = self.recipe["quantize"]
        if not q:
            return []
        prof = self.recipe["profile"]
        by_name = {m["name"]: m for m in self.recipe["models"]}
        units = []  # (source name, model file, test data, protocol, calibration data, reference or None)
        if q["models"] == "all":
            for m in self.recipe["models"]:
                units.append((m["name"], files[m["name"]], m["test"], m["protocol"], q.get("data") or m["train_data"],
                              None if m["role"] == "unpruned" else self._unpruned_of(m, files)))
        for e in pruned:
            m = by_name[e["parent"]]
            units.append((e["name"], Path(e["path"]), e["data"], e["protocol"], q.get("data") or m["train_data"],
                          files[m["name"]]))
        self.log(f"[3/5] quantize: {len(units)} model(s) to INT8 priors [{self._elapsed()}]")
        folder = self.out / "quantized"
        out = []
        for source, path, test, protocol, calibration, reference in units:
            name = f"{source}-int8"
            report_file = folder / f"{name}.json"

            def action(path=path, test=test, protocol=protocol, calibration=calibration, reference=reference,
                       name=name, report_file=report_file):
                report = quantize_file(str(path), calibration, str(folder / f"{name}.onnx"), eval_data=test,
                                       samples=q["samples"], threads=prof.get("threads", 2), side=prof.get("side"),
                                       reference=None if reference is None else str(reference), rounds=q["rounds"],
                                       min_run_time=q["min_run_time"], protocol=protocol,
                                       log=lambda msg: self.log(f"    {msg}"))
                write_text(report_file, json.dumps(report, indent=1) + "\n")

            if report_file.exists() and Path(path).stat().st_mtime_ns > report_file.stat().st_mtime_ns:
                self.log(f"  {Path(path).name} rebuilt after {report_file.name}: quantized again")
                report_file.unlink()
            self._stage(f"quantize {source} (calibrated on {calibration})", report_file, action)
            out.append({"source": source, "name": name, "report": json.loads(report_file.read_text())})
        return out

    def _unpruned_of(self, m: dict, files: dict[str, Path]) -> Path | None:
        """The unpruned model a recursive one is compared with: its teacher, else the
        recipe's first unpruned model of the same family."""
        if "distill" in m:
            return files[m["distill"]["teacher"]]
        family = load_model(files[m["name"]]).spec["family"]
        return next((files[u["name"]] for u in self.recipe["models"] if u["role"] == "unpruned"
                     and load_model(files[u["name"]]).spec["family"] == family), None)

    def collect(self, files: dict[str, Path], pruned: list[dict], quantized: list[dict] = ()) -> Path:
        """Evaluate and profile every model into OUT/results (one interleaved profile per family)."""
        results = self.out / "results"
        unit = self.units[-2]
        self.log(f"[4/5] evaluate and profile [{self._elapsed()}]")
        entries = [{"path": str(files[m["name"]]), "name": m["name"], "role": m["role"], "data": m["test"],
                    "protocol": m["protocol"], "ratio": None, "importance": None, "strategy": None,
                    "finetune_data": f"train:{m['distill']['data']}" if "distill" in m else "none"}
                   for m in self.recipe["models"]]
        entries += pruned
        done = results / "results.jsonl"
        if done.is_file():
            collected = done.stat().st_mtime_ns
            written = [Path(split_source(e["path"])[1] or "") if is_factory(e["path"]) else Path(e["path"])
                       for e in entries] + [self.out / "quantized" / f"{q['name']}.json" for q in quantized]
            rebuilt = [p.name for p in written if p.name and p.stat().st_mtime_ns > collected]
            if not rebuilt:
                self.log(f"  {results} exists, kept")
                unit.done = True
                return results
            self.log(f"  {', '.join(rebuilt)} rebuilt after {results}: every model evaluated and profiled again")
            shutil.rmtree(results)
        prof = self.recipe["profile"]
        unit.done = False  # evaluated and profiled (again)
        self._say_remaining()
        began = time.monotonic()
        collect_run(results, entries, data=None, backends=prof["backends"], threads=prof.get("threads", 2),
                    batch=prof.get("batch", 1), side=prof.get("side"), rounds=prof.get("rounds", 15),
                    min_run_time=prof.get("min_run_time", 1.0), tolerance=prof["tolerance"], title=self.recipe["title"],
                    quantized=quantized,
                    breakdown=prof["breakdown"], log=lambda msg: self.log(f"  {msg}"), progress=self.progress)
        self.eta.finished(unit, time.monotonic() - began)
        return results

    def budget(self, results: Path) -> dict | None:
        """Latency-budget mode: the best-PSNR pruned model at least ``speedup`` x faster."""
        b = self.recipe["budget"]
        if not b:
            return None
        outcome = choose_within_budget(read_records(results), b["speedup"], b["backend"])
        write_text(self.out / "budget.json", json.dumps(outcome, indent=1) + "\n")
        chosen, fastest = outcome["chosen"], outcome["fastest"]
        if chosen:
            line = (f"latency budget {b['speedup']:g}x ({b['backend']}): {chosen['model']}, "
                    f"{chosen['speedup_vs_unpruned']:.2f}x faster, {chosen['psnr']:.2f} dB")
        else:
            best = f"{fastest['speedup_vs_unpruned']:.2f}x ({fastest['model']})" if fastest else "none"
            line = f"latency budget {b['speedup']:g}x ({b['backend']}): no pruned model meets it; the fastest is {best}"
        self.log(f"  {line}")
        outcome["line"] = line
        return outcome

    def estimate(self) -> str:
        """Probe the models (:mod:`.eta`); how long the whole run should take."""
        with torch.random.fork_rng():  # the run's seeds stay as if nothing had been probed
            self._probe()
        return self.eta.estimate(self.units, self._family_sizes())

    def run(self) -> dict:
        with importable_from(self.folder), progress_enabled(self.progress and progress_is_enabled()):
            return self._run()

    def _run(self) -> dict:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        write_text(self.out / "recipe.toml", self.recipe["text"])
        began = time.monotonic()
        first = self.estimate()
        self._said = self._remaining()
        whole = self.eta.remaining(self.units, self._family_sizes(), head="to run")
        self.log(f"{whole} [estimated in {duration(time.monotonic() - began)}]")
        files = self.sources()
        pruned = self.pruned(files)
        quantized = self.quantized(files, pruned)
        results = self.collect(files, pruned, quantized)
        budget = self.budget(results)
        notes = " ".join(filter(None, [self.recipe["notes"], budget["line"] + "." if budget else ""]))
        write_run_info(results, self.recipe["title"], notes)
        self.log(f"[5/5] report -> {self.report_dir} [{self._elapsed()}]")
        written = write_report(results, self.report_dir)
        self.units[-1].done = True
        self.log(f"done in {duration(time.monotonic() - self._start)} (estimated at the start: {first})")
        return {"out": str(self.out), "results": str(results), "report": written["out"],
                "models": len(read_records(results)), "budget": budget}


def run_pipeline(recipe: str | Path, out: str | Path, **kwargs) -> dict:
    """Run (or with ``resume=True`` continue) a recipe; returns where everything went."""
    return Pipeline(recipe, out, **kwargs).run()
