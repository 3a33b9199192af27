"""Inpainting (9-channel inpainting UNets, or a plain 4-channel one): input checked, guidance on.

python examples/inpaint.py [--model ID_OR_PATH --device cuda]
"""

import diffusers
import numpy as np
import PIL.Image
from _common import demo_image, parse, show

import guard
from guard.pipelines.tiny import build_tiny_pipeline

args = parse(__doc__.splitlines()[0])
size = 512 if args.model else 64
mask = np.zeros((size, size), dtype=np.uint8)
mask[size // 4 : size * 3 // 4, size // 4 : size * 3 // 4] = 255
if args.model:
    pipe = guard.GuardedStableDiffusionInpaintPipeline.from_pretrained(args.model, policy=args.policy)
    pipe = pipe.to(args.device)
else:
    pipe = guard.protect(build_tiny_pipeline(diffusers.StableDiffusionInpaintPipeline, in_channels=9), args.policy)
out = pipe(
    "a small wooden cabin",
    image=demo_image(size),
    mask_image=PIL.Image.fromarray(mask),
    height=size,
    width=size,
    num_inference_steps=args.steps or 4,
)
show(out)
