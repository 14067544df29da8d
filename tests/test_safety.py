"""Fault injection: hostile and malformed inputs through every sub-command.

Each case runs the command line (in-process, or in a subprocess where the fault needs
one: resource limits, a second process) and asserts exit status 2, exactly one line on
stderr without a traceback, and that nothing was written or changed in the work folder.
"""
from __future__ import annotations

import json
import math
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from finetune_helpers import REPO, spade_env
from spade.cli import main
from spade.errors import SpadeError
from spade.fileio import TMP_TAG, atomic_path, check_output, output_lock
from spade.models import create_model, load_model, save_model
from spade.physics import MRI, random_mask
from spade.profile.backends import Bound, verify

SIDE = 32


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every file and folder under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def fails_cleanly(capsys, argv: list[str], folder: Path, expect: str = "") -> str:
    """Run ``spade ARGV``: exit 2, one line on stderr, no traceback, ``folder`` unchanged."""
    before = snapshot(folder)
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert expect in err, err
    assert snapshot(folder) == before, f"{argv} changed {folder}"
    return err


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A work folder with a tiny MRI model, test images and a weights-only blob to mutate."""
    root = tmp_path_factory.mktemp("work")
    torch.manual_seed(0)
    model = create_model("ista-net-plus", phases=1, channels=4, block_size=None)
    save_model(root / "mri.spade", model, MRI(random_mask((SIDE, SIDE), 4, 0.1, seed=0), real_image=True,
                                               centered=False))
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        np.save(images / f"img{i}.npy", rng.random((SIDE, SIDE), dtype=np.float32))
    return root


def blob_of(work: Path) -> dict:
    return torch.load(work / "mri.spade", weights_only=True)


def hostile(work: Path, name: str, mutate) -> Path:
    """A copy of the tiny model file with ``mutate(blob, spec)`` applied."""
    blob = blob_of(work)
    original = blob["spec"]
    spec = json.loads(original)
    mutate(blob, spec)
    if blob.get("spec") is original:  # the mutation changed the parsed spec, not the raw text
        blob["spec"] = json.dumps(spec)
    path = work / "hostile" / f"{name}.spade"
    path.parent.mkdir(exist_ok=True)
    torch.save(blob, path)
    return path


def _set(*keys_value):
    *keys, value = keys_value

    def mutate(blob, spec):
        target = spec
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
    return mutate


def _del(*keys):
    def mutate(blob, spec):
        target = spec
        for k in keys[:-1]:
            target = target[k]
        del target[keys[-1]]
    return mutate


def _raw_spec(text):
    def mutate(blob, spec):
        blob["spec"] = text
    return mutate


def _weights(fn):
    def mutate(blob, spec):
        fn(blob["state_dict"])
    return mutate


def _physics(fn):
    def mutate(blob, spec):
        fn(blob["physics"])
    return mutate


def _first_weight(sd):
    return next(k for k in sd if k.endswith("conv_D.weight"))


def _nested(depth):
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


#: (case name, mutation, text the one-line error must contain)
HOSTILE = [
    ("spec-not-json", _raw_spec("{"), "not valid JSON"),
    ("spec-a-list", _raw_spec("[]"), "not a JSON object"),
    ("spec-deep-json", _raw_spec("[" * 100_000 + "]" * 100_000), "MAX_JSON_DEPTH"),
    ("spec-deep-provenance", _set("source", _nested(40)), "MAX_JSON_DEPTH"),
    ("config-nan", _set("config", "sym_weight", math.nan), "must be a finite number"),
    ("protocol-a-list", _set("protocol", ["ista-mri"]), "'protocol'"),
    ("pruning-a-number", _set("pruning", 5), "'pruning'"),
    ("finetuning-text", _set("finetuning", "x"), "'finetuning'"),
    ("wrong-format", _set("format", "other"), "expected spade-model/1"),
    ("family-int", _set("family", 123), "'family'"),
    ("family-unknown", _set("family", "nope"), "nope"),
    ("config-missing", _del("config"), "'config'"),
    ("config-a-list", _set("config", [1, 2]), "'config'"),
    ("channels-negative", _set("config", "channels", -4), "must be >= 0"),
    ("channels-huge", _set("config", "channels", 10 ** 9), "SPADE_MAX_WIDTH"),
    ("phases-huge", _set("config", "phases", 10 ** 9), "SPADE_MAX_ITERATIONS"),
    ("total-too-large", _set("config", "channels", 4000), "SPADE_MAX_TENSOR_ELEMENTS"),
    ("channels-text", _set("config", "channels", "wide"), "must be int"),
    ("channels-fraction", _set("config", "channels", 4.5), "must be int"),
    ("channels-bool", _set("config", "channels", True), "must be int"),
    ("config-nested", _set("config", "channels", {"a": 1}), "'config.channels'"),
    ("shapes-negative", _set("shapes", {"sharing.blocks.0.conv_D.weight": [-1, 1, 3, 3]}), "non-negative"),
    ("shapes-huge", _set("shapes", {"sharing.blocks.0.conv_D.weight": [10 ** 9, 10 ** 9]}),
     "SPADE_MAX_TENSOR_ELEMENTS"),
    ("shapes-unknown-tensor", _set("shapes", {"no.such.tensor": [1]}), "does not have"),
    ("widths-text", _set("widths", {"a": "x"}), "'widths.a'"),
    ("physics-no-settings", _set("physics", {"kind": "mri"}), "'physics.settings'"),
    ("physics-unknown-kind", _set("physics", "kind", "xray"), "unknown physics 'xray'"),
    ("physics-setting-text", _set("physics", "settings", "noise_level", "loud"), "cannot be rebuilt"),
    ("physics-setting-inf", _set("physics", "settings", "noise_level", math.inf), "finite"),
    ("physics-setting-missing", _del("physics", "settings", "real_image"), "cannot be rebuilt"),
    ("weights-not-tensor", _weights(lambda sd: sd.__setitem__(_first_weight(sd), [1.0, 2.0])), "not a tensor"),
    ("weights-a-string", _weights(lambda sd: sd.__setitem__(_first_weight(sd), "x" * 100)), "not a tensor"),
    ("weights-missing", _weights(lambda sd: sd.pop(_first_weight(sd))), "missing"),
    ("weights-extra-key", _weights(lambda sd: sd.__setitem__("fcs.999999999.conv_D", torch.zeros(1))),
     "unexpected"),
    ("weights-wrong-shape", _weights(lambda sd: sd.__setitem__(_first_weight(sd), torch.zeros(2, 1, 3, 3))),
     "wrong shape"),
    ("weights-nan", _weights(lambda sd: sd[_first_weight(sd)].view(-1).__setitem__(0, math.nan)), "NaN"),
    ("weights-inf", _weights(lambda sd: sd[_first_weight(sd)].view(-1).__setitem__(0, math.inf)), "NaN or infinite"),
    ("weights-sparse", _weights(lambda sd: sd.__setitem__(_first_weight(sd), sd[_first_weight(sd)].to_sparse())),
     "not a dense real CPU tensor"),
    ("weights-meta", _weights(lambda sd: sd.__setitem__(_first_weight(sd), torch.empty(4, 1, 3, 3, device="meta"))),
     "not a dense real CPU tensor"),
    ("weights-half", _weights(lambda sd: sd.__setitem__(_first_weight(sd), sd[_first_weight(sd)].half())),
     "wrong type"),
    ("physics-mask-complex", _physics(lambda ph: ph.__setitem__("mask", ph["mask"].to(torch.complex64))),
     "not a dense real CPU tensor"),
    ("weights-int-key", _weights(lambda sd: sd.__setitem__(7, torch.zeros(1))), "not a tensor"),
    ("physics-tensor-missing", _physics(lambda ph: ph.pop("mask")), "cannot be rebuilt"),
    ("physics-mask-nan", _physics(lambda ph: ph["mask"].view(-1).__setitem__(0, math.nan)), "NaN"),
    ("physics-mask-zero", _physics(lambda ph: ph["mask"].zero_()), "all zeros"),
    ("physics-mask-3d", _physics(lambda ph: ph.__setitem__("mask", torch.ones(2, SIDE, SIDE))), "expected (H, W)"),
    ("physics-not-dict", lambda blob, spec: blob.__setitem__("physics", [1]), "not a dict of tensors"),
]


def _file_cases(work: Path) -> dict[str, Path]:
    files = {name: hostile(work, name, mutate) for name, mutate, _ in HOSTILE}
    other = work / "hostile"
    (other / "garbage.spade").write_bytes(b"\x00not a model" * 10)
    files["garbage"] = other / "garbage.spade"
    torch.save([1, 2, 3], other / "a-list.spade")
    files["a-list"] = other / "a-list.spade"
    torch.save({"spec": 5, "state_dict": {}}, other / "spec-int.spade")
    files["spec-int"] = other / "spec-int.spade"
    return files


EXTRA = [("garbage", "not a SPADE model file or corrupt"), ("a-list", "is not a SPADE model file"),
         ("spec-int", "is not a SPADE model file")]
CASES = [(name, expect) for name, _, expect in HOSTILE] + EXTRA


@pytest.fixture(scope="module")
def hostile_files(work) -> dict[str, Path]:
    return _file_cases(work)


def _command(name: str, model: Path, work: Path, out: Path) -> list:
    return {"evaluate": ["evaluate", model, "--data", work / "images"],
            "prune": ["prune", model, "--ratio", "0.5", "--out", out],
            "finetune": ["finetune", model, "--strategy", "self-supervised", "--data", work / "images", "--steps",
                         "1", "--out", out, "--no-progress"],
            "export": ["export", model, "--onnx", out.with_suffix(".onnx")],
            "profile": ["profile", model, "--rounds", "1", "--min-run-time", "0.01"]}[name]


@pytest.mark.parametrize("command", ["evaluate", "prune", "finetune", "export", "profile"])
@pytest.mark.parametrize("case, expect", CASES, ids=[c[0] for c in CASES])
def test_hostile_model_file(capsys, work, hostile_files, command, case, expect):
    fails_cleanly(capsys, _command(command, hostile_files[case], work, work / "out.spade"), work, expect)


def test_hostile_files_are_refused_before_any_allocation(hostile_files):
    """The denial-of-service cases fail in well under a second and without building anything large."""
    import time
    for name in ("channels-huge", "phases-huge", "total-too-large", "shapes-huge", "spec-deep-json"):
        start = time.perf_counter()
        with pytest.raises(SpadeError):
            load_model(hostile_files[name])
        assert time.perf_counter() - start < 2.0, name


def test_a_limit_can_be_raised(work, monkeypatch):
    path = hostile(work, "deeper", _set("config", "phases", 3))
    monkeypatch.setenv("SPADE_MAX_ITERATIONS", "2")
    with pytest.raises(SpadeError, match="is 3, over the limit of 2: set SPADE_MAX_ITERATIONS"):
        load_model(path)
    monkeypatch.setenv("SPADE_MAX_ITERATIONS", "3")
    with pytest.raises(SpadeError, match="does not match its architecture"):  # past the limit: the weights' check
        load_model(path)


# --- outputs: nothing destroyed, nothing overwritten, nothing half-written ----------------------

def _out_cases(work: Path) -> list[tuple[str, str, str]]:
    model = work / "mri.spade"
    folder = work / "results"
    (folder / "keep.txt").parent.mkdir(exist_ok=True)
    (folder / "keep.txt").write_text("precious")
    (work / "existing.spade").write_bytes(b"precious")
    (work / "afile").write_text("a file")
    return [("existing-folder", str(folder), "is an existing folder"),
            ("existing-file", str(work / "existing.spade"), "add --force"),
            ("same-as-input", str(model), "is an input"),
            ("same-as-input-other-spelling", str(work / "images" / ".." / "mri.spade"), "is an input"),
            ("empty", "", "is not a file name"),
            ("dot", ".", "is not a file name"),
            ("dotdot", "..", "is not a file name"),
            ("trailing-slash", str(work / "new") + "/", "is not a file name"),
            ("under-a-file", str(work / "afile" / "x.spade"), "is a file, not a folder"),
            ("read-only-location", "/sys/spade-test/x.spade", "cannot")]


OUT_CASES = ["existing-folder", "existing-file", "same-as-input", "same-as-input-other-spelling", "empty", "dot",
             "dotdot", "trailing-slash", "under-a-file", "read-only-location"]


@pytest.mark.parametrize("command", ["prune", "finetune", "import", "export"])
@pytest.mark.parametrize("case", OUT_CASES)
def test_bad_out_is_refused(capsys, work, command, case):
    cases = {name: (out, expect) for name, out, expect in _out_cases(work)}
    out, expect = cases[case]
    if case == "read-only-location" and os.access("/sys", os.W_OK) and os.geteuid() != 0:
        pytest.skip("/sys is writable here")
    model = work / "mri.spade"
    if command == "import":
        if case.startswith("same-as-input"):
            out = str(work / "mask.npy") if case == "same-as-input" else str(work / "images" / ".." / "mask.npy")
        np.save(work / "mask.npy", (torch.rand(SIDE, SIDE) < 0.3).numpy().astype(np.float32))
        torch.save({}, work / "weights.pkl")
        argv = ["import", "ista-net-plus", work / "weights.pkl", "--mask", work / "mask.npy", "--out", out]
    elif command == "export":
        argv = ["export", model, "--onnx", out if not out.endswith(".spade") else out[:-6] + ".onnx"]
        if case == "existing-file":
            (work / "existing.onnx").write_bytes(b"precious")
        if case.startswith("same-as-input"):
            pytest.skip("an ONNX output cannot be named like a .spade input")
    else:
        argv = _command(command, model, work, work / "unused.spade")
        argv[argv.index("--out") + 1] = out
    if case == "existing-folder" and command == "export":
        argv[-1] = str(work / "results")
    fails_cleanly(capsys, argv, work, expect)
    assert (work / "results" / "keep.txt").read_text() == "precious"
    assert (work / "existing.spade").read_bytes() == b"precious"


def test_force_replaces_an_existing_file_and_only_then(capsys, work):
    out = work / "forced.spade"
    out.write_bytes(b"old")
    argv = ["prune", work / "mri.spade", "--ratio", "0.5", "--out", out]
    fails_cleanly(capsys, argv, work, "add --force")
    assert main([str(a) for a in argv] + ["--force"]) == 0
    assert load_model(out).spec["pruning"]["ratio"] == 0.5
    out.unlink()


def test_second_writer_of_one_out_is_refused(capsys, work):
    """A second process (here: a second lock holder) writing the same --out fails in one line."""
    out = work / "locked.spade"
    with output_lock(out):
        err = fails_cleanly(capsys, ["finetune", work / "mri.spade", "--strategy", "self-supervised", "--data",
                                     work / "images", "--steps", "1", "--out", out, "--no-progress"], work,
                            "is being written by process")
        assert str(os.getpid()) in err
    assert not (work / "locked.spade.lock").exists()


@pytest.mark.parametrize("argv", [
    ["run", "RECIPE", "--out", "OUT"], ["demo", "--out", "OUT"], ["report", "RUN", "--out", "OUT"],
    ["evaluate", "MODEL", "--data", "IMAGES", "--out", "OUT"], ["profile", "MODEL", "--out", "OUT"]])
def test_a_folder_being_written_is_refused_to_a_second_writer(capsys, work, argv):
    """Run, report and results folders are locked like model files: a second writer fails at
    once, before reading anything (here the recipe and the run folder do not even exist)."""
    out = work / "busy"
    names = {"RECIPE": work / "none.toml", "OUT": out, "RUN": work / "results", "MODEL": work / "mri.spade",
             "IMAGES": work / "images"}
    with output_lock(out):
        fails_cleanly(capsys, [str(names.get(a, a)) for a in argv], work, "is being written by process")
    assert not out.exists() and not (work / "busy.lock").exists()


@pytest.mark.slow
def test_two_finetune_processes_on_one_out(work, tmp_path):
    """Two real fine-tuning runs started together on one --out: one writes, the other is refused."""
    out = tmp_path / "shared.spade"
    argv = [sys.executable, "-m", "spade", "finetune", str(work / "mri.spade"), "--strategy", "self-supervised",
            "--data", str(work / "images"), "--steps", "30", "--out", str(out), "--no-progress"]
    procs = [subprocess.Popen(argv, cwd=REPO, env=spade_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 2], results
    refused = next(r for r in results if r[2] == 2)
    assert "is being written by process" in refused[1] and refused[1].count("\n") == 1
    assert load_model(out).model is not None


def test_atomic_path_never_deletes_a_folder(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "keep.txt").write_text("precious")
    with pytest.raises(SpadeError, match="existing folder"):
        with atomic_path(folder) as tmp:
            tmp.write_text("x")
    assert (folder / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no temporary left


def test_temporaries_of_a_killed_writer_are_removed(work, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    stale = tmp_path / f".model.spade{TMP_TAG}{dead.pid}-abc"
    stale.mkdir()
    (stale / "model.spade").write_bytes(b"half")
    alive = tmp_path / f".model.spade{TMP_TAG}{os.getppid()}-def"  # a running process: kept
    alive.mkdir()
    with atomic_path(tmp_path / "model.spade") as tmp:
        tmp.write_bytes(b"whole")
    assert not stale.exists() and alive.exists()
    assert (tmp_path / "model.spade").read_bytes() == b"whole"


def test_check_output_accepts_a_new_path(tmp_path):
    assert check_output(tmp_path / "new" / "m.spade") == tmp_path / "new" / "m.spade"


def _limited(argv: list[str], cwd: Path, fsize: int | None = None, memory: int = 6 * 2 ** 30,
             seconds: int = 120) -> subprocess.CompletedProcess:
    """``spade ARGV`` in a subprocess with a memory, CPU-time and (optional) file-size limit;
    past the file-size limit a write fails with EFBIG, as on a full disk."""
    def limits():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds))
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return subprocess.run([sys.executable, "-m", "spade", *map(str, argv)], cwd=cwd, env=spade_env(),
                          capture_output=True, text=True, timeout=seconds * 2, preexec_fn=limits)


def test_full_disk_is_one_line_and_leaves_nothing(work, tmp_path):
    proc = _limited(["prune", work / "mri.spade", "--ratio", "0.5", "--out", tmp_path / "p.spade"], REPO,
                    fsize=4096)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot write" in proc.stderr and "p.spade" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_hostile_import_weights_bounded(work, tmp_path):
    """A weights key fcs.999999999.* is refused at once, within a memory and time bound."""
    weights = tmp_path / "w.pkl"
    torch.save({"module.fcs.999999999.conv_D": torch.zeros(4, 1, 3, 3)}, weights)
    np.save(tmp_path / "mask.npy", np.ones((SIDE, SIDE), np.float32))
    proc = _limited(["import", "ista-net-plus", weights, "--mask", tmp_path / "mask.npy", "--out",
                     tmp_path / "m.spade"], REPO, memory=3 * 2 ** 30, seconds=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "SPADE_MAX_ITERATIONS" in proc.stderr, \
        proc.stderr
    assert not (tmp_path / "m.spade").exists()


# --- numbers ------------------------------------------------------------------------------------

def _ista_weights(channels=4, phases=1, bad=None):
    sd = {}
    for i in range(phases):
        p = f"module.fcs.{i}."
        sd.update({p + "lambda_step": torch.tensor([0.5]), p + "soft_thr": torch.tensor([0.01]),
                   p + "conv_D": torch.randn(channels, 1, 3, 3), p + "conv_G": torch.randn(1, channels, 3, 3)})
        for n in ("conv1_forward", "conv2_forward", "conv1_backward", "conv2_backward"):
            sd[p + n] = torch.randn(channels, channels, 3, 3)
    if bad is not None:
        sd["module.fcs.0.conv_D"].view(-1)[0] = bad
    return sd


@pytest.mark.parametrize("case, expect", [("nan", "NaN or infinite"), ("inf", "NaN or infinite"),
                                          ("zero-mask", "all zeros")])
def test_import_refuses_bad_numbers(capsys, tmp_path, case, expect):
    torch.save(_ista_weights(bad={"nan": math.nan, "inf": math.inf}.get(case)), tmp_path / "w.pkl")
    mask = np.zeros((SIDE, SIDE), np.float32) if case == "zero-mask" else np.ones((SIDE, SIDE), np.float32)
    np.save(tmp_path / "mask.npy", mask)
    fails_cleanly(capsys, ["import", "ista-net-plus", tmp_path / "w.pkl", "--mask", tmp_path / "mask.npy", "--out",
                           tmp_path / "m.spade"], tmp_path, expect)


def test_save_model_refuses_nan_weights(tmp_path):
    model = create_model("ista-net-plus", phases=1, channels=4, block_size=None)
    with torch.no_grad():
        next(model.parameters()).fill_(math.nan)
    with pytest.raises(SpadeError, match="NaN"):
        save_model(tmp_path / "m.spade", model, MRI(random_mask((SIDE, SIDE), 4, 0.1), real_image=True,
                                                    centered=False))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, expect", [
    (["evaluate", "MODEL", "--data", "IMAGES", "--noise", "inf"], "finite"),
    (["evaluate", "MODEL", "--data", "IMAGES", "--noise", "nan"], "finite"),
    (["evaluate", "MODEL", "--data", "IMAGES", "--noise", "-1"], ">= 0"),
    (["profile", "MODEL", "--min-run-time", "inf"], "finite"),
    (["profile", "MODEL", "--min-run-time", "nan"], "finite"),
    (["profile", "MODEL", "--min-run-time", "0"], "> 0"),
    (["finetune", "MODEL", "--strategy", "self-supervised", "--data", "IMAGES", "--steps", "1", "--noise", "inf",
      "--out", "OUT"], "finite"),
    (["finetune", "MODEL", "--strategy", "self-supervised", "--data", "IMAGES", "--steps", "1", "--clip", "nan",
      "--out", "OUT"], "finite"),
])
def test_non_finite_options_are_refused(capsys, work, argv, expect):
    subs = {"MODEL": work / "mri.spade", "IMAGES": work / "images", "OUT": work / "o.spade"}
    fails_cleanly(capsys, [subs.get(a, a) for a in argv], work, expect)


def test_verify_fails_on_nan_outputs(work):
    loaded = load_model(work / "mri.spade")
    bound = Bound(loaded.model, loaded.physics).eval()
    with torch.no_grad():
        y = loaded.physics.forward(torch.rand(1, 1, SIDE, SIDE))
        assert verify(bound, bound, [y]) == 0.0
        with pytest.raises(SpadeError, match="backend output holds NaN"):
            verify(lambda v: torch.full_like(bound(v), math.nan), bound, [y])
        with pytest.raises(SpadeError, match="eager output holds NaN"):
            verify(bound, bound, [torch.full_like(y, math.nan)])


# --- training recipes ---------------------------------------------------------------------------

RECIPE = """
[model]
family = "ista-net-plus"
phases = 1
channels = 4

[physics]
kind = "mri"
shape = [32, 32]

[data]
source = "embedded-mri"

[train]
steps = 1
"""


@pytest.mark.parametrize("old, new, expect", [
    ("shape = [32, 32]", "shape = [100000, 100000]", "SPADE_MAX_IMAGE_SIDE"),
    ("shape = [32, 32]", "shape = [32, 32]\ncoils = 100000", "SPADE_MAX_COILS"),
    ("shape = [32, 32]", 'shape = "big"', "must be a whole number"),
    ("shape = [32, 32]", "shape = [32.5, 32]", "must be a whole number"),
    ("shape = [32, 32]", "shape = [32, 32]\nnoise_level = inf", "must be finite"),
    ("shape = [32, 32]", "shape = [32, 32]\nacceleration = 'x'", "must be a number"),
    ("shape = [32, 32]", "shape = [32, 32]\nseed = {a = 1}", "must be a number, a string"),
    ("channels = 4", "channels = 1000000000", "SPADE_MAX_WIDTH"),
    ("phases = 1", "phases = 1000000000", "SPADE_MAX_ITERATIONS"),
    ("channels = 4", "channels = 4000", "SPADE_MAX_TENSOR_ELEMENTS"),
    ("[data]", "[data]\nx = " + "[" * 50 + "1" + "]" * 50, "MAX_JSON_DEPTH"),
    ("[data]", "[data]\nx = " + "[" * 100_000 + "1" + "]" * 100_000, "MAX_JSON_DEPTH"),
])
def test_training_recipe_limits(capsys, tmp_path, old, new, expect):
    path = tmp_path / "recipe.toml"
    path.write_text(RECIPE.replace(old, new, 1))
    fails_cleanly(capsys, ["train", path, "--out", tmp_path / "run", "--no-progress"], tmp_path, expect)


def test_training_recipe_not_utf8(capsys, tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_bytes(RECIPE.encode() + b"\n# \xff\xfe\n")
    fails_cleanly(capsys, ["train", path, "--out", tmp_path / "run", "--no-progress"], tmp_path, "not UTF-8")


# --- images -------------------------------------------------------------------------------------

@pytest.mark.parametrize("case, array, expect", [
    ("float-0-255", np.full((SIDE, SIDE), 200.0, np.float32), "divide 8-bit data by 255"),
    ("negative", np.full((SIDE, SIDE), -0.5, np.float32), "must lie in [0, 1]"),
    ("int64-unscaled", np.full((SIDE, SIDE), 100_000, np.int64), "integer values in [100000, 100000]"),
    ("int-negative", np.full((SIDE, SIDE), -3, np.int16), "integer values in [-3, -3]"),
    ("complex", np.ones((SIDE, SIDE), np.complex64), "is complex"),
    ("nan", np.full((SIDE, SIDE), np.nan, np.float32), "NaN or Inf"),
    ("too-small", np.ones((5, 5), np.float32), "at least 7x7"),
    ("text", np.array([["a"] * SIDE] * SIDE), "expected numbers"),
])
def test_bad_images_are_refused(capsys, work, tmp_path, case, array, expect):
    folder = tmp_path / "images"
    folder.mkdir()
    np.save(folder / f"{case}.npy", array)
    fails_cleanly(capsys, ["evaluate", work / "mri.spade", "--data", folder], tmp_path, expect)


def test_float_tiff_keeps_its_values(capsys, work, tmp_path):
    from PIL import Image as PILImage

    from spade.data import load_images
    pixels = np.random.default_rng(1).random((SIDE, SIDE), dtype=np.float32)
    PILImage.fromarray(pixels, mode="F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(load_images(str(tmp_path))[0].pixels, pixels)
    assert main(["evaluate", str(work / "mri.spade"), "--data", str(tmp_path), "--json"]) == 0
    assert 5 < json.loads(capsys.readouterr().out)["psnr"] < 60


def test_integer_images_are_scaled_by_the_stated_rule(tmp_path):
    from spade.data import load_images
    np.save(tmp_path / "a8.npy", np.full((SIDE, SIDE), 255, np.int64))
    np.save(tmp_path / "b16.npy", np.full((SIDE, SIDE), 65535, np.int32))
    assert [float(img.tensor().max()) for img in load_images(str(tmp_path))] == [1.0, 1.0]


# --- comparing models -----------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["--baseline", "--recursive"])
def test_profile_refuses_a_reference_of_other_physics(capsys, work, role):
    cs = work / "cs.spade"
    if not cs.exists():
        from spade.physics import build_physics
        save_model(cs, create_model("ista-net-plus", phases=1, channels=4), build_physics({"kind": "cs",
                                                                                           "ratio": 0.25}))
    fails_cleanly(capsys, ["profile", work / "mri.spade", role, cs, "--rounds", "1", "--min-run-time", "0.01"], work,
                  "cannot be compared with")


def test_provenance_may_hold_nan(tmp_path):
    """Provenance (a summary with a NaN loss) is written and read back; only the numbers
    that build the model must be finite."""
    model = create_model("ista-net-plus", phases=1, channels=4, block_size=None)
    physics = MRI(random_mask((SIDE, SIDE), 4, 0.1), real_image=True, centered=False)
    save_model(tmp_path / "m.spade", model, physics, finetuning={"final_loss": math.nan})
    assert math.isnan(load_model(tmp_path / "m.spade").spec["finetuning"]["final_loss"])


@pytest.mark.parametrize("argv, expect", [
    (["profile", "MODEL", "--side", "100000"], "SPADE_MAX_IMAGE_SIDE"),
    (["profile", "MODEL", "--batch", "1000000"], "SPADE_MAX_BATCH"),
    (["profile", "MODEL", "--batch", "0"], "batch must be >= 1"),
    (["export", "MODEL", "--onnx", "OUT", "--side", "100000"], "SPADE_MAX_IMAGE_SIDE"),
    (["export", "MODEL", "--onnx", "OUT", "--batch", "-2"], "batch must be >= 1"),
    (["finetune", "MODEL", "--strategy", "self-supervised", "--data", "IMAGES", "--steps", "1", "--patch", "100000",
      "--out", "OUT"], "SPADE_MAX_IMAGE_SIDE"),
    (["finetune", "MODEL", "--strategy", "self-supervised", "--data", "IMAGES", "--steps", "1", "--batch",
      "100000", "--out", "OUT"], "SPADE_MAX_BATCH"),
    (["finetune", "MODEL", "--strategy", "self-supervised", "--data", "IMAGES", "--steps", "1", "--patches",
      "1000000000", "--out", "OUT"], "SPADE_MAX_SAMPLES"),
    (["prune", "MODEL", "--ratio", "0.5", "--data", "IMAGES", "--samples", "1000000000", "--out", "OUT"],
     "SPADE_MAX_SAMPLES"),
    (["prune", "MODEL", "--ratio", "0.5", "--data", "IMAGES", "--crop", "4", "--out", "OUT"], "crop must be >= 8"),
    (["evaluate", "MODEL", "--protocol", "nmse", "--samples", "1000000000"], "SPADE_MAX_SAMPLES"),
])
def test_example_input_sizes_are_bounded(capsys, work, argv, expect):
    subs = {"MODEL": work / "mri.spade", "OUT": work / ("o.onnx" if argv[0] == "export" else "o.spade"),
            "IMAGES": work / "images"}
    fails_cleanly(capsys, [subs.get(a, a) for a in argv], work, expect)


def test_train_refuses_to_replace_a_finished_run(capsys, tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text(RECIPE)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.spade").write_bytes(b"a finished run")
    fails_cleanly(capsys, ["train", path, "--out", tmp_path / "run", "--no-progress"], tmp_path, "add --force")


def test_os_errors_anywhere_are_one_line(capsys, work):
    """An OS error outside the write layer (here: a name too long to stat) is one line too."""
    fails_cleanly(capsys, ["evaluate", "m" * 300 + ".spade", "--data", work / "images"], work, "too long")


def test_evaluation_fails_on_a_diverging_model(capsys, work):
    """Finite weights whose output overflows to inf/NaN: no 'mean PSNR nan dB', an error."""
    def explode(sd):
        for k in sd:
            sd[k].fill_(3e38)
    path = hostile(work, "diverging", _weights(explode))
    fails_cleanly(capsys, ["evaluate", path, "--data", work / "images"], work, "the model diverges")
