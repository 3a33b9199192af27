"""Image stages: the input-image check (editing pipelines' ``image``, ``ip_adapter_image``, masked-image
latents...) and the output check on every generated image. Both run the policy's output classifiers;
latents are decoded with the pipeline's VAE first, so they are never "classified" as raw numbers."""

from __future__ import annotations

from typing import Any

from guard.stages.base import InputImages, Request, Stage, Verdict, register_stage


def decode_latents(pipe: Any, latents: Any, scaled: bool = True):
    """(N, H, W, 3) pixels in [0, 1] of VAE latents (N, C, h, w) or (C, h, w), only to classify them."""
    import torch

    vae = pipe.vae
    z = latents if latents.ndim == 4 else latents[None]
    with torch.no_grad():
        z = z.to(device=vae.device, dtype=vae.dtype)
        if scaled:
            z = z / vae.config.scaling_factor
        image = vae.decode(z, return_dict=False)[0]
    return pipe.image_processor.postprocess(image, output_type="np")


def _pixels(request: Request, group: InputImages) -> list[Any]:
    from guard.output.base import to_rgb_uint8

    out = []
    for k, im in enumerate(group.items):
        if group.latent:
            if request.pipe is None:
                raise RuntimeError(f"`{group.argument}` holds latents but there is no pipeline VAE to decode them")
            im = decode_latents(request.pipe, im, scaled=group.scaled)[0]
        out.append(to_rgb_uint8(im, where=f"`{group.argument}` image {k}"))
    return out


@register_stage
class InputImageStage(Stage):
    """``input_images``: the output classifiers on each input image; by ``input_images.action`` a
    flagged image blocks or escalates the prompts it conditions. One verdict per prompt."""

    name = "input_images"

    def enabled(self, request: Request) -> bool:
        return bool(self.policy.input_images.enabled and self.guard.output_check_enabled and request.input_images)

    def run(self, request: Request) -> list[Verdict]:
        n = len(request.prompts)
        verdicts = [Verdict(self.name, i) for i in range(n)]
        for group in request.input_images:
            # only the categories the policy applies to inputs; each verdict's input_decision is what its
            # category (or input_images.action) says a flagged upload does to the request
            flags = self.guard.checker.check(_pixels(request, group), target="input")
            for k, v in enumerate(flags):
                if not v.is_flagged or v.input_decision in ("none", None):
                    continue
                action = v.input_decision
                targets = [k] if group.per_prompt and k < n else list(range(n))
                why = f"input `{group.argument}` image {k} flagged: " + ", ".join(v.flagged[:2])
                for pi in targets:
                    out = verdicts[pi]
                    if action == "block":
                        out.decision = "block"
                        out.reasons.insert(0, why)
                    elif action == "escalate":
                        out.reasons.append(why + " (escalated)")
                        if out.rank < 2:
                            out.decision = "escalate"
                    else:
                        out.reasons.append(why + " (allowed by policy)")
                    out.detail = v
        return verdicts


@register_stage
class OutputCheckStage(Stage):
    """``output``: the classifiers on every generated image (latents decoded first); ``detail`` is the
    OutputVerdict and ``action`` what the policy does with the image. One verdict per image."""

    name = "output_check"
    over = "images"

    def enabled(self, request: Request) -> bool:
        return bool(self.guard.output_check_enabled and request.generated)

    def pixels(self, request: Request) -> list[Any]:
        from guard.output.base import to_rgb_uint8

        images = request.generated
        if request.output_latent:
            import time

            import torch

            t0 = time.perf_counter()
            decode = request.decode or (lambda z: decode_latents(request.pipe, z))
            images = list(decode(torch.stack(list(images))))
            if request.report is not None:
                request.report.timings_ms["decode_for_check"] = (time.perf_counter() - t0) * 1000
        return [to_rgb_uint8(p, where=f"generated image {k}") for k, p in enumerate(images)]

    def run(self, request: Request) -> list[Verdict]:
        return self.check(self.pixels(request))

    def check(self, pixels: list[Any]) -> list[Verdict]:
        out = []
        for i, v in enumerate(self.guard.checker.check(pixels)):
            decision = "block" if v.is_flagged and v.action in _blocking() else ("flag" if v.is_flagged else "allow")
            out.append(Verdict(self.name, i, decision, reasons=list(v.flagged), action=v.action, detail=v))
        return out

    def on_error(self, request: Request, message: str, fail_open: bool) -> list[Verdict]:
        from guard.report import OutputVerdict

        verdicts = super().on_error(request, message, fail_open)
        for v in verdicts:
            v.detail = (
                OutputVerdict(action="none")
                if fail_open
                else OutputVerdict(flagged=[f"error: {message} (fail closed)"], action="blank")
            )
        return verdicts


def _blocking():
    from guard.output.labels import BLOCKING_ACTIONS

    return BLOCKING_ACTIONS
