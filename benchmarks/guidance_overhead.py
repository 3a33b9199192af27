"""Cost of negative guidance, per pipeline kind, on a mid-size randomly initialised UNet.

    python benchmarks/guidance_overhead.py [--steps 10] [--repeat 2] [--threads N]

For each kind (text2img, img2img, inpaint, pix2pix): the unguarded pipeline, the guarded one with
guidance on every image (one extra batch slot beside the two CFG branches), and the guarded one with
guidance configured but not triggered (apply: escalated, benign prompt), side by side in one run.
``gen`` ratios compare the denoising loop alone (the guard's 'generate' timing against the plain
call); ``total`` ratios include the prompt screen and the NudeNet output check. Targets: guidance on
<= 1.55x, configured but not triggered <= 1.03x. Last line: ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import diffusers  # noqa: E402
import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402
import torch  # noqa: E402
from diffusers import UNet2DConditionModel  # noqa: E402

import guard  # noqa: E402
from guard.pipelines.tiny import build_tiny_components  # noqa: E402


def mid_pipeline(cls, in_channels: int, seed: int = 0):
    comps = build_tiny_components(seed, in_channels=in_channels, sample_size=64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        comps["unet"] = UNet2DConditionModel(
            sample_size=64,
            in_channels=in_channels,
            out_channels=4,
            block_out_channels=(128, 256, 512),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        ).eval()
    import inspect

    accepted = inspect.signature(cls.__init__).parameters
    pipe = cls(**{k: v for k, v in comps.items() if k in accepted}, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    img = PIL.Image.fromarray((np.random.RandomState(0).rand(128, 128, 3) * 255).astype("uint8"))
    mask = PIL.Image.fromarray(np.full((128, 128), 255, dtype=np.uint8))
    kinds = {
        "text2img": (diffusers.StableDiffusionPipeline, 4, {"height": 128, "width": 128}),
        "img2img": (diffusers.StableDiffusionImg2ImgPipeline, 4, {"image": img, "strength": 1.0}),
        "inpaint": (
            diffusers.StableDiffusionInpaintPipeline,
            9,
            {"image": img, "mask_image": mask, "height": 128, "width": 128},
        ),
        "pix2pix": (diffusers.StableDiffusionInstructPix2PixPipeline, 8, {"image": img}),
    }
    concepts = {"concepts": ["nudity, naked body", "gore, graphic violence"]}
    on = {"name": "bench-on", "guidance": {**concepts, "apply": "always"}}
    idle = {"name": "bench-idle", "guidance": {**concepts, "apply": "escalated"}}
    result = {}
    print(
        f"{'kind':10} {'plain s':>8} {'on s':>8} {'idle s':>8} {'on/plain gen':>13} {'idle/plain gen':>15} "
        f"{'on/plain total':>15} {'idle/plain total':>17}"
    )
    for kind, (cls, ch, kw) in kinds.items():
        pipe = mid_pipeline(cls, ch)
        g_on = guard.protect(pipe, on)
        g_idle = guard.protect(pipe, idle)
        call = dict(kw, num_inference_steps=args.steps, output_type="np")

        def timed(p, call=call):
            best_total, best_gen = float("inf"), float("inf")
            for r in range(args.repeat):
                t0 = time.perf_counter()
                out = p(["a lighthouse on a cliff at dusk"], generator=torch.Generator().manual_seed(r), **call)
                total = time.perf_counter() - t0
                gen = out.guard_report.timings_ms["generate"] / 1000 if hasattr(out, "guard_report") else total
                best_total, best_gen = min(best_total, total), min(best_gen, gen)
            return best_total, best_gen

        timed(g_on)  # warm up: screen model, index, ONNX sessions, concept embeddings
        timed(pipe)
        p_total, p_gen = timed(pipe)
        on_total, on_gen = timed(g_on)
        idle_total, idle_gen = timed(g_idle)
        r_on, r_idle = on_gen / p_gen, idle_gen / p_gen
        t_on, t_idle = on_total / p_total, idle_total / p_total
        print(
            f"{kind:10} {p_total:8.2f} {on_total:8.2f} {idle_total:8.2f} {r_on:13.3f} {r_idle:15.3f} "
            f"{t_on:15.3f} {t_idle:17.3f}"
        )
        result[f"{kind}_on"] = round(r_on, 3)
        result[f"{kind}_idle"] = round(r_idle, 3)
        result[f"{kind}_on_total"] = round(t_on, 3)
        guard.unprotect(g_on)
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
