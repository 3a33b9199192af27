"""img2img: the input image is checked, negative guidance is on for every image (apply: auto).

python examples/img2img.py [--model ID_OR_PATH --device cuda]
"""

import diffusers
from _common import demo_image, parse, show

import guard
from guard.pipelines.tiny import build_tiny_pipeline

args = parse(__doc__.splitlines()[0])
if args.model:
    pipe = guard.GuardedStableDiffusionImg2ImgPipeline.from_pretrained(args.model, policy=args.policy)
    pipe = pipe.to(args.device)
else:
    pipe = guard.protect(build_tiny_pipeline(diffusers.StableDiffusionImg2ImgPipeline), args.policy)
out = pipe(
    ["a watercolor of the same landscape", "the same landscape with a naked woman in it"],
    image=demo_image(512 if args.model else 64),
    strength=0.75,
    num_inference_steps=args.steps or 4,
)
show(out)
