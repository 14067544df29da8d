"""The README's promises: its Python examples run as written, and `.ci/run` runs exactly
the README's test command."""
from __future__ import annotations

import re

import torch

from finetune_helpers import REPO, cs_physics, tiny_model
from spade.finetune import Context, Strategy

README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)
COMMANDS = re.findall(r"```bash\n(.*?)\n```", README, re.S)


def test_the_first_two_commands_install_demo_and_tests_and_ci_runs_the_second():
    demo, tests = COMMANDS[:2]
    assert demo.startswith("python3 -m pip install torch==2.13.0") and demo.endswith("spade demo")
    assert tests.endswith("python3 -m pytest")
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == tests


def test_bring_your_own_model_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(BLOCKS[0], "README bring-your-own", "exec"), scope)
    record = scope["record"]
    assert record.params_after < 0.4 * record.params_before
    assert (tmp_path / "small.pt").is_file()
    kspace, mask = scope["kspace"], scope["mask"]
    assert torch.equal(scope["restored"].eval()(kspace, mask), scope["small"].eval()(kspace, mask))


def test_strategy_plugin_example_is_a_working_strategy():
    scope: dict = {}
    exec(compile(next(b for b in BLOCKS if "class TotalVariation" in b), "README strategy", "exec"), scope)
    strategy = scope["TotalVariation"](weight=1e-2)
    assert isinstance(strategy, Strategy) and strategy.name == "tv"
    physics, model = cs_physics(), tiny_model()
    x = torch.rand(1, 1, 33, 33)
    y = physics.A(x)
    x_net = model(y, physics)
    loss = strategy.loss(x_net, y, physics, model, Context())
    loss.backward()
    assert loss.item() > 0 and any(p.grad is not None for p in model.parameters())


def test_bring_your_own_model_end_to_end_runs(tmp_path, monkeypatch, capsys):
    """The real case of "Bring your own model": its module written out, its commands run as
    written (in-process; the profiler's rounds shortened), its reload block executed."""
    import shlex
    import sys

    import pandas as pd

    from spade.cli import main
    module = next(b for b in BLOCKS if b.startswith("# mynets.py"))
    commands = next(c for c in COMMANDS if "spade prune mynets:build" in c).splitlines()
    reload = next(b for b in BLOCKS if "mynets.build()" in b)
    (tmp_path / "mynets.py").write_text(module)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mynets", raising=False)
    for line in commands:
        argv = shlex.split(line)
        assert argv[0] == "spade"
        if argv[1] == "profile":
            argv += ["--rounds", "2", "--min-run-time", "0.05"]
        assert main(argv[1:] + (["--no-progress"] if argv[1] == "finetune" else [])) == 0, capsys.readouterr().err
    table = pd.read_csv(tmp_path / "run" / "report" / "results.csv").set_index("model")
    assert {"mynets:build", "pruned", "tuned"} <= set(table.index)
    assert table.loc["tuned", "strategy"] == "school" and table.loc["tuned", "psnr"] > 0
    assert table.loc["tuned", "params"] < 0.5 * table.loc["mynets:build", "params"]
    assert table.loc["pruned", "speedup_vs_unpruned"] > 0
    scope: dict = {}
    exec(compile(reload, "README bring-your-own reload", "exec"), scope)
    assert "school 0.5" in capsys.readouterr().out


def test_benchmark_data_section_lays_out_every_file_the_recipes_name():
    """Each ``$SPADE_BENCH_DATA/...`` file of recipes/ and each benchmark set sits where the
    README's 'Benchmark data' layout puts it."""
    from spade.data.sources import BENCHMARK_SETS

    section = README.split("\n## Benchmark data\n", 1)[1].split("\n## ", 1)[0]
    layout = re.search(r"```\n(\$SPADE_BENCH_DATA/\n.*?)```", section, re.S).group(1).splitlines()
    texts = [p.read_text() for p in sorted((REPO / "recipes").rglob("*.toml"))]
    named = sorted({m for t in texts for m in re.findall(r'"\$SPADE_BENCH_DATA/([\w./-]+)"', t)})
    assert len(named) >= 5
    for path in named:
        folder, name = path.rsplit("/", 1)
        row = [line for line in layout if line.strip().startswith(folder + "/")]
        assert len(row) == 1 and name in row[0].split(), path
    for folder in BENCHMARK_SETS.values():
        assert f"{folder}/" in " ".join(layout), folder
    assert "github.com/jianzhangcs/ISTA-Net-PyTorch" in section and "SPADE_BENCH_DATA" in section
