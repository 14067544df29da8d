"""School on a pruned CS25: output-only vs output + every iteration, same steps, Urban100 99x99 patches.

Usage: python distill.py CS25.spade PRUNED.spade STEPS ITERATES_WEIGHT ...  (0 = output only); scored on Set11.
"""
import sys, copy, json, time, torch
torch.set_num_threads(1)
from spade.data import load_images
from spade.models.io import load_model
from spade.finetune import finetune
from spade.evaluation import evaluate

teacher_path, pruned_path, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
teacher = load_model(teacher_path).model
loaded = load_model(pruned_path)
phys = loaded.physics
train = load_images("urban100", "y")
test = load_images("set11", "y")
print(json.dumps({"model": pruned_path, "steps": 0, "psnr": evaluate(loaded.model, phys, test, "ista-cs").mean("psnr")}), flush=True)
for iterates in [float(v) for v in sys.argv[4:]]:
    student = copy.deepcopy(loaded.model)
    t = time.time()
    options = {"school": {"iterates": iterates}} if iterates else None
    _, hist = finetune(student, phys, train, "school", teacher=teacher, options=options, steps=steps, batch=4,
                       lr=5e-4, patch=99, data_mode="patches", seed=0, progress=False, log=lambda m: None)
    ev = evaluate(student, phys, test, "ista-cs")
    out = [s for s in hist.steps]
    print(json.dumps({"model": pruned_path, "steps": steps, "iterates": iterates, "psnr": ev.mean("psnr"),
                      "ssim": ev.mean("ssim"), "first_loss": out[0]["loss"], "final_loss": hist.final_loss,
                      "final_terms": {k: v for k, v in out[-1].items() if k not in ("step", "lr")},
                      "seconds": round(time.time() - t, 1)}), flush=True)
