"""Per gallery network: params / MACs before and after pruning at 0.5, relative L2 output
change at ratio 0.1, profiled speedup of the 0.5-pruned model (1 thread).

Run from the repository root: python reports/third-party-gallery/measure.py (with
SPADE_BENCH_DATA for the official ISTA-Net+ weights; the fastmri row needs the fastmri
package). Prints one JSON line per network and writes them to measurements.json here.
"""
import json, os, sys
from pathlib import Path
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "gallery"), str(REPO / "tests")]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch
torch.set_num_threads(1)
import spade
from spade.models import OwnModel
from spade.profile import profile_models
import coast_official, deepinv_unrolled, deq, fastmri_varnet, ista_official, modl, usrnet
from spade.data.sources import benchmark_root

def first(o):
    while not isinstance(o, torch.Tensor):
        o = o[0]
    return o

def ista():
    folder = benchmark_root() / "ista_net_plus" / "cs25"
    return ista_official.load_official(folder), ista_official.official_inputs(folder, 25)

def varnet():
    torch.manual_seed(0)
    return fastmri_varnet.VarNet(num_cascades=2, sens_chans=4, sens_pools=2, chans=8, pools=2).eval(), fastmri_varnet.example_inputs()

def coast():
    torch.manual_seed(0)
    return coast_official.COAST(3).eval(), coast_official.example_inputs()

def fastmri_pkg():
    import fastmri
    from fastmri.models import VarNet
    torch.manual_seed(0)
    model = VarNet(num_cascades=2, sens_chans=4, sens_pools=2, chans=8, pools=2).eval()
    image = torch.randn(1, 4, 24, 24, 2)
    mask = torch.rand(1, 1, 1, 24, 1) < 0.4
    mask[..., 9:15, :] = True
    return model, (fastmri.fft2c(image) * mask, mask, 6)

NETS = {"ISTA-Net+ official (9 phases, raw params)": ista, "fastMRI-style VarNet (re-typed)": varnet,
        "COAST-style": coast, "DeepInverse-style PGD": deepinv_unrolled.build, "MoDL": modl.build,
        "DEQ (JFB)": deq.build, "USRNet": usrnet.build}
try:
    import fastmri  # noqa
    NETS["fastmri.models.VarNet (package)"] = fastmri_pkg
except ImportError:
    pass

rows = []
for name, build in NETS.items():
    model, ex = build()
    with torch.no_grad():
        ref = first(model(*ex))
    small, rec = spade.prune(model, ex, ratio=0.5)
    tenth, _ = spade.prune(model, ex, ratio=0.1)
    with torch.no_grad():
        o = first(tenth(*ex))
    rel = float((o - ref).norm() / ref.norm())
    fam = name
    a = OwnModel("gallery:unpruned", model, ex, {"family": fam})
    b = OwnModel("gallery:pruned", small, ex, {"family": fam, "pruning": {"ratio": 0.5}})
    prof = profile_models([a, b], threads=1, rounds=10, min_run_time=0.5)
    e = {x["name"]: x for x in prof["models"]}
    p = e["gallery:pruned"]
    rows.append({"net": name, "params": [rec.params_before, rec.params_after], "macs": [rec.macs_before, rec.macs_after],
                 "rel_l2_r01": rel, "speedup": p["speedup"], "ci": p["speedup_ci"], "clock": prof["timing"]["clock"],
                 "ms": [e["gallery:unpruned"]["median_ms"], p["median_ms"]], "flags": p["flags"],
                 "load": prof["load_average"], "input": list(first(ex).shape) if isinstance(ex, tuple) else None})
    print(json.dumps(rows[-1]), flush=True)
(HERE / "measurements.json").write_text(json.dumps(rows, indent=1) + "\n")
