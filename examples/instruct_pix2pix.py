"""instruct-pix2pix: the image-conditioned branch is the reference for the concept push.

python examples/instruct_pix2pix.py [--model timbrooks/instruct-pix2pix --device cuda]
"""

import diffusers
from _common import demo_image, parse, show

import guard
from guard.pipelines.tiny import build_tiny_pipeline

args = parse(__doc__.splitlines()[0])
if args.model:
    pipe = guard.GuardedStableDiffusionInstructPix2PixPipeline.from_pretrained(args.model, policy=args.policy)
    pipe = pipe.to(args.device)
else:
    pipe = guard.protect(
        build_tiny_pipeline(diffusers.StableDiffusionInstructPix2PixPipeline, in_channels=8), args.policy
    )
out = pipe(
    ["make it winter", "undress the people"],
    image=demo_image(512 if args.model else 64),
    num_inference_steps=args.steps or 4,
    image_guidance_scale=1.5,
)
show(out)
