"""Text-to-image drop-in: GuardedStableDiffusionPipeline with a policy.

python examples/quickstart.py                                  # embedded tiny model, offline
python examples/quickstart.py --model stable-diffusion-v1-5/stable-diffusion-v1-5 --device cuda
"""

from _common import parse, show

import guard
from guard import GuardedStableDiffusionPipeline
from guard.pipelines.tiny import build_tiny_pipeline

args = parse(__doc__.splitlines()[0])
if args.model:
    pipe = GuardedStableDiffusionPipeline.from_pretrained(args.model, policy=args.policy).to(args.device)
else:
    pipe = guard.protect(build_tiny_pipeline(), args.policy)
out = pipe(
    ["a lighthouse at dusk", "a photo of a naked woman"],
    num_inference_steps=args.steps or 2,
    height=None if args.model else 64,
    width=None if args.model else 64,
)
show(out)
