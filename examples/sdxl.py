"""SDXL: no safety checker of its own, so the guard's output check is the only one; prompt_2 is
screened with prompt.

    python examples/sdxl.py [--model stabilityai/stable-diffusion-xl-base-1.0 --device cuda]
"""

from _common import parse, show

import guard
from guard.pipelines.tiny import build_tiny_sdxl_pipeline

args = parse(__doc__.splitlines()[0])
if args.model:
    pipe = guard.GuardedStableDiffusionXLPipeline.from_pretrained(args.model, policy=args.policy).to(args.device)
else:
    pipe = guard.protect(build_tiny_sdxl_pipeline(), args.policy)
out = pipe(
    ["a red fox in the snow", "a fox"],
    prompt_2=["photo, 35mm", "a photo of a naked woman"],
    num_inference_steps=args.steps or 2,
    height=None if args.model else 64,
    width=None if args.model else 64,
)
show(out)
