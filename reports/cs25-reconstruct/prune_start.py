"""Set11 PSNR before fine-tuning of CS25 pruned at RATIO (taylor, round 8) without and with reconstruction.

Usage: python prune_start.py CS25.spade RATIO NCROPS:SIZE:RIDGE ...  (SPADE_BENCH_DATA must point at the data)
Ranking: the first 4 Urban100 images; calibration: centre crops of Urban100 images 5.. (disjoint from Set11).
"""
import sys, time, json, copy, torch
torch.set_num_threads(1)
import spade
from spade.data import load_images, example_pair
from spade.data.images import Image
from spade.models.io import load_model
from spade.prune.data import measurement_batches
from spade.prune.reconstruct import reconstruct
from spade.evaluation import evaluate

path, ratio = sys.argv[1], float(sys.argv[2])
variants = [tuple(v.split(":")) for v in sys.argv[3:]]  # ncal:size:ridge
m = load_model(path)
phys = m.physics
x, y = example_pair(phys, batch=1)
train = load_images("urban100", "y")
test = load_images("set11", "y")
rank = measurement_batches(phys, train, "ista-cs", 4, 0)
p0, r = spade.prune(m.model, (y, phys), ratio=ratio, importance="taylor", round_to=8, data=rank)
print(json.dumps({"ratio": ratio, "reconstruct": False, "psnr": evaluate(p0, phys, test, "ista-cs").mean("psnr")}), flush=True)
for ncal, size, ridge in variants:
    ncal, size, ridge = int(ncal), int(size), float(ridge)
    crops = [Image(f"{im.name}-c", im.pixels[(im.shape[0] - size) // 2:(im.shape[0] + size) // 2,
                                             (im.shape[1] - size) // 2:(im.shape[1] + size) // 2].copy())
             for im in train[4:4 + ncal]]
    cal = measurement_batches(phys, crops, "ista-cs", ncal, 100)
    ys = torch.cat([b[0][0] for b in cal])
    cal = [((ys, phys), None)]  # one batch of every crop
    p = copy.deepcopy(p0)
    rr = reconstruct(p, m.model, (y, phys), r.history, cal, ridge)
    ev = evaluate(p, phys, test, "ista-cs")
    print(json.dumps({"ratio": ratio, "reconstruct": True, "crops": ncal, "size": size, "ridge": ridge,
                      "psnr": ev.mean("psnr"), "ssim": ev.mean("ssim"), "seconds": rr.seconds}), flush=True)
