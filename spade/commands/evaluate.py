"""``spade evaluate MODEL [--data DIR]``: mean PSNR/SSIM under a field protocol."""
from __future__ import annotations

from ..data import channel_mode, load_images
from ..errors import require
from ..limits import check_count
from ..evaluation import DEFAULT_PROTOCOL, PROTOCOLS, evaluate
from ..models import is_factory
from ..models.io import load_model
from ..models.validation import validation_images
from ..prune import load_own
from ..report.collect import record_evaluation
from .common import add_device, add_json, add_progress, device, emit_json, nonneg_float, positive_int, writes_output


def add_arguments(p):
    p.description = ("Measure test images with the model's physics, reconstruct and score "
                     "them; the physics' starting point is scored too.")
    p.add_argument("model", help="SPADE model file, or your own network as MODULE:FUNCTION[@FILE]: a function "
                                 "returning (model, (y, physics)) with a SPADE physics (e.g. spade.Adapter(net, "
                                 "call)), FILE its pruned or fine-tuned copy")
    p.add_argument("--data",
                   help="test images: a folder, 'embedded', 'embedded-mri', or a benchmark set (set11, brain50, ...) "
                        "(default: the validation images the model file names, from 'spade train' or 'spade "
                        "finetune'); not used by the nmse protocol, which draws its own test codes")
    p.add_argument("--samples", type=positive_int, default=1000,
                   help="number of test codes of the nmse protocol (default 1000)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS),
                   help="scoring convention (default: the model's, else by physics)")
    p.add_argument("--noise", type=nonneg_float, default=None, help="measurement noise level (default: the physics')")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--out", metavar="DIR",
                   help="also add the scores and a sample image to run folder DIR (created if missing) for "
                        "'spade report DIR'")
    add_device(p)
    add_json(p)
    add_progress(p)
    p.set_defaults(handler=run)


@writes_output(folder=lambda args: args.out)
def run(args) -> int:
    dev = device(args.device)
    if is_factory(args.model):
        loaded = load_own(args.model, dev)
        loaded.require_physics("spade evaluate")
    else:
        loaded = load_model(args.model, dev)
        require(loaded.physics is not None, f"model file {args.model} stores no physics to measure with")
    protocol = args.protocol or loaded.spec.get("protocol") or DEFAULT_PROTOCOL.get(loaded.physics.kind)
    data = args.data
    if protocol == "nmse":
        images = check_count(args.samples, "MAX_SAMPLES", "--samples")
    else:
        channels = channel_mode(getattr(loaded.model, "config", {}).get("image_channels", 1))
        if data is None:  # the images that validated the model's last training or fine-tuning run
            named = validation_images(loaded.spec, channels)
            require(named is not None, f"protocol '{protocol}' needs test images: give --data (the model file "
                                       "names no validation images)")
            data, images = f"{named[0]} (validation)", named[1]
        else:
            images = load_images(data, channels)
    result = evaluate(loaded.model, loaded.physics, images, protocol, noise_level=args.noise, seed=args.seed, device=dev,
                      keep=1 if args.out else 0)
    if args.out:
        record_evaluation(args.out, args.model, loaded, result, data)
    if args.json:
        out = result.to_json()
        out.update({"model": args.model, "data": data})
        emit_json(out)
        return 0
    s = result.summary()
    if protocol == "nmse":
        print(f"{args.model}: {result.per_image[0]['image']} ({PROTOCOLS[protocol]})")
        print(f"  NMSE {s['nmse_db']:.2f} dB   ISTA: {s['ista_nmse_db']:.2f} dB   starting point: {s['init_nmse_db']:.2f} dB")
        return 0
    for r in result.per_image:
        print(f"  {r['image']:<24} PSNR {r['psnr']:7.3f} dB  SSIM {r['ssim']:.4f}")
    print(f"{args.model} on {data} ({len(result.per_image)} images, {protocol}: {PROTOCOLS[protocol]})")
    print(f"  mean PSNR {s['psnr']:.2f} dB  SSIM {s['ssim']:.4f}   starting point: {s['init_psnr']:.2f} dB / {s['init_ssim']:.4f}")
    return 0
