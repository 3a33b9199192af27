"""``GuardedPipelineMixin``: the guard around any diffusers pipeline's ``__call__``.

For each call: validate the inputs, screen every prompt (one encoder pass), denoise only the allowed
prompts (a blocked prompt never reaches the UNet), run the output classifiers on every generated
image (latent output is decoded to be classified), blank or flag what the policy says, put black
images in the blocked slots, and return the parent's output type with a ``guard_report``. Every
image gets an audit line.
"""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import PIL.Image
import torch
from diffusers.pipelines.stable_diffusion.pipeline_output import StableDiffusionPipelineOutput

from guard.errors import GuardBlocked, GuardInputError
from guard.guidance import guidance_active, rows_to_guide
from guard.guidance import prepare as prepare_guidance
from guard.output.base import to_rgb_uint8
from guard.output.check import BLOCKING_ACTIONS, apply_action, blank_like
from guard.pipelines.component import GuardComponent
from guard.policy import PolicySource
from guard.report import GuardReport, ImageReport, OutputVerdict

logger = logging.getLogger("guard")

_OUTPUT_TYPES = ("pil", "np", "pt", "latent")


@dataclass
class GuardedPipelineOutput(StableDiffusionPipelineOutput):
    """``StableDiffusionPipelineOutput`` plus the guard's report of every decision."""

    guard_report: Optional[GuardReport] = None


class GuardedPipelineMixin:
    """Mixed into a subclass of a diffusers pipeline class, before it in the bases."""

    #: name of the argument holding the text prompt in the parent's ``__call__``
    _guard_prompt_arg = "prompt"
    #: further prompt arguments that reach a text encoder (SDXL's ``prompt_2``): screened too
    _guard_extra_prompt_args: tuple[str, ...] = ()
    #: input images of editing pipelines: screened by the output classifiers, sliced with the batch
    _guard_image_args: tuple[str, ...] = ()
    #: text2img | img2img | inpaint | pix2pix | sdxl | sdxl-img2img
    _guard_kind = "text2img"
    _guard_output_cls = GuardedPipelineOutput

    # ------------------------------------------------------------------ construction

    def _guard_register(self, guard: Optional[GuardComponent]) -> None:
        from guard.erase.wiring import apply_policy_erasers

        comp = guard if guard is not None else GuardComponent.from_policy("default")
        apply_policy_erasers(self, comp.guard.policy)  # fingerprint-checked; on error nothing changes
        self.register_modules(guard=comp)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, policy: PolicySource | None = None, **kwargs):
        """``from_pretrained`` of the parent; ``policy`` (path, built-in name, dict or Policy) replaces
        the saved one. A pipeline saved without a guard gets ``policy`` or the default policy."""
        if policy is not None:
            kwargs["guard"] = GuardComponent.from_policy(policy)
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    @classmethod
    def from_pipe(cls, pipeline, policy: PolicySource | None = None, **kwargs):
        """Build this guarded pipeline from another pipeline's components (no copy). The source's
        guard is kept unless ``policy`` is given; dtype is kept unless ``torch_dtype`` is given."""
        if policy is not None:
            kwargs["guard"] = GuardComponent.from_policy(policy)
        if "torch_dtype" not in kwargs and "dtype" not in kwargs:
            kwargs["dtype"] = pipeline.dtype
        # from_pipe re-applies the dtype to every model, which makes diffusers warn once per model
        # about casting even when nothing changes; keep that noise out of the user's log.
        log = logging.getLogger("diffusers.models.modeling_utils")
        level = log.level
        log.setLevel(logging.ERROR)
        try:
            new = super().from_pipe(pipeline, **kwargs)
        finally:
            log.setLevel(level)
        if getattr(pipeline, "_progress_bar_config", None) is not None:  # keep the user's progress bar setting
            new.set_progress_bar_config(**pipeline._progress_bar_config)
        return new

    # ------------------------------------------------------------------ policy access

    @property
    def guard_policy(self):
        return self.guard.guard.policy

    def set_policy(self, policy: PolicySource) -> None:
        """Replace the policy (validated, and its erasers applied, before anything changes)."""
        from guard.erase.wiring import apply_policy_erasers

        comp = GuardComponent.from_policy(policy)
        apply_policy_erasers(self, comp.guard.policy)
        self.register_modules(guard=comp.to(self.device))

    # ------------------------------------------------------------------ the call

    def __call__(self, *args: Any, **kwargs: Any):
        return self._guarded_call(args, kwargs)

    def _guard_parent_call(self):
        # the first class after the mixin in the MRO that defines __call__
        mro = type(self).__mro__
        for klass in mro[mro.index(GuardedPipelineMixin) + 1 :]:
            if "__call__" in klass.__dict__:
                return klass.__dict__["__call__"]
        raise TypeError(f"{type(self).__name__} has no pipeline __call__ to guard")

    def _guarded_call(self, args: tuple, kwargs: dict):
        t_start = time.perf_counter()
        parent_call = self._guard_parent_call()
        sig = inspect.signature(parent_call)
        try:
            bound = sig.bind(self, *args, **kwargs)
        except TypeError as e:
            raise GuardInputError(f"{type(self).__name__}.__call__: {e}") from None
        bound.apply_defaults()
        params = dict(bound.arguments)
        params.pop("self")
        extra = params.pop("kwargs", {}) if "kwargs" in sig.parameters else {}
        params.update(extra)

        guard = self.guard.guard
        report = guard.new_report(type(self).__name__)
        from guard.erase.wiring import report_entries

        report.erasers = report_entries(self)
        prompts, single = self._guard_prompts(params)
        n_prompts = len(prompts)
        nipp = params.get("num_images_per_prompt")
        nipp = 1 if nipp is None else nipp
        if not isinstance(nipp, int) or isinstance(nipp, bool) or nipp < 1:
            raise GuardInputError(f"num_images_per_prompt must be a positive integer, got {nipp!r}")
        output_type = params.get("output_type") or "pil"
        if output_type not in _OUTPUT_TYPES:
            raise GuardInputError(f"output_type must be one of {', '.join(_OUTPUT_TYPES)}, got {output_type!r}")
        return_dict = params.get("return_dict", True)

        # 1. prompt screen (and, on editing pipelines, the input images)
        screened = self._guard_screen(prompts, params, report)
        input_escalated = self._guard_screen_inputs(params, screened, report)
        allowed = [i for i, r in enumerate(screened) if r.decision != "block"]
        blocked = [i for i, r in enumerate(screened) if r.decision == "block"]
        if blocked and guard.policy.on_block == "raise":
            self._guard_finish_report(report, screened, None, nipp, allowed, [])
            report.timings_ms["total"] = (time.perf_counter() - t_start) * 1000
            guard.write_audit(report, prompts)
            first = screened[blocked[0]]
            raise GuardBlocked(
                f"prompt {blocked[0]} blocked by policy {guard.policy.name!r}: "
                + (first.reasons[0] if first.reasons else "blocked"), report)

        # 2. denoise the allowed prompts only
        images_allowed: list[Any] = []
        parent_nsfw: list[bool] = []
        if allowed:
            sub = self._guard_subset(params, allowed, n_prompts, nipp)
            inner_type = "latent" if output_type == "latent" else "pt"
            sub["output_type"] = inner_type
            sub["return_dict"] = True
            state = self._guard_guidance_state(screened, input_escalated, allowed, nipp, sub, report)
            t0 = time.perf_counter()
            with guidance_active(state):
                out = parent_call(self, **sub)
            report.timings_ms["generate"] = (time.perf_counter() - t0) * 1000
            if state is not None:
                report.notes.append(
                    f"negative guidance ({state.mode}, layout {state.layout}) on "
                    f"{int(state.row_mask.sum())} of {len(state.row_mask)} image(s), steps {state.applied_steps}, "
                    f"+{state.extra_rows} UNet batch rows per step"
                    + (" (classifier-free guidance was off: an unconditional branch was added)"
                       if state.layout == "single" else ""))
            images_allowed = list(out.images)
            nsfw = getattr(out, "nsfw_content_detected", None)
            parent_nsfw = list(nsfw) if nsfw is not None else [False] * len(images_allowed)

        # 3. output check on every generated image
        if output_type == "latent" and images_allowed and guard.output_check_enabled:
            t0 = time.perf_counter()
            pixels = self._guard_decode_latents(torch.stack(images_allowed))
            report.timings_ms["decode_for_check"] = (time.perf_counter() - t0) * 1000
        else:
            pixels = images_allowed
        verdicts = guard.check_images([to_rgb_uint8(p, where=f"generated image {k}")
                                       for k, p in enumerate(pixels)] if guard.output_check_enabled else pixels,
                                      report)

        # 4. assemble in request order
        final: list[Any] = []
        nsfw_out: list[bool] = []
        allowed_pos = {p: k for k, p in enumerate(allowed)}
        template = images_allowed[0] if images_allowed else None
        for pi in range(n_prompts):
            for j in range(nipp):
                if pi in allowed_pos:
                    k = allowed_pos[pi] * nipp + j
                    img, v = images_allowed[k], verdicts[k]
                    img = apply_action(img, v, latent=output_type == "latent")
                    final.append(img)
                    nsfw_out.append(bool(parent_nsfw[k]) or v.is_flagged)
                else:
                    final.append(self._guard_black(params, output_type, template))
                    nsfw_out.append(True)
        self._guard_finish_report(report, screened, verdicts, nipp, allowed, parent_nsfw)
        report.timings_ms["total"] = (time.perf_counter() - t_start) * 1000
        guard.write_audit(report, prompts)

        images = self._guard_pack(final, output_type)
        if not return_dict:
            return (images, nsfw_out) if "nsfw_content_detected" in self._guard_output_cls.__dataclass_fields__ \
                and self._guard_kind not in ("sdxl", "sdxl-img2img") else (images,)
        return self._guard_output_cls(images=images, nsfw_content_detected=nsfw_out, guard_report=report)

    # ------------------------------------------------------------------ pieces

    def _guard_prompts(self, params: dict) -> tuple[list[Optional[str]], bool]:
        """The prompts as a list; validates types and pairing with negative prompts and embeddings."""
        name = self._guard_prompt_arg
        prompt = params.get(name)
        embeds = params.get("prompt_embeds")
        if prompt is None:
            if embeds is None:
                raise GuardInputError(f"pass `{name}` (a string or a list of strings) or `prompt_embeds`")
            if self.guard.guard.policy.screen.enabled:
                raise GuardInputError(
                    "`prompt_embeds` without `prompt` cannot be screened; pass the prompt text too "
                    "(the guard screens the text and checks that the batch sizes match), or disable "
                    "the screen in the policy"
                )
            return [None] * int(embeds.shape[0]), False
        if isinstance(prompt, str):
            prompts, single = [prompt], True
        elif isinstance(prompt, (list, tuple)):
            if not prompt:
                raise GuardInputError(f"`{name}` is an empty list")
            for i, p in enumerate(prompt):
                if not isinstance(p, str):
                    raise GuardInputError(f"`{name}[{i}]` must be a string, got {type(p).__name__}")
            prompts, single = list(prompt), False
        else:
            raise GuardInputError(f"`{name}` must be a string or a list of strings, got {type(prompt).__name__}")
        if embeds is not None and int(embeds.shape[0]) != len(prompts):
            raise GuardInputError(
                f"`prompt_embeds` has batch size {int(embeds.shape[0])} but {len(prompts)} prompt(s) were given")
        neg = params.get("negative_prompt")
        if neg is not None:
            if isinstance(neg, (list, tuple)):
                if len(neg) != len(prompts):
                    raise GuardInputError(
                        f"`negative_prompt` has {len(neg)} entries but `{name}` has {len(prompts)}; "
                        "pass one negative prompt per prompt, or a single string")
                for i, n in enumerate(neg):
                    if not isinstance(n, str):
                        raise GuardInputError(f"`negative_prompt[{i}]` must be a string, got {type(n).__name__}")
            elif not isinstance(neg, str):
                raise GuardInputError(f"`negative_prompt` must be a string or a list of strings, "
                                      f"got {type(neg).__name__}")
        return prompts, single

    def _guard_screen(self, prompts, params, report):
        guard = self.guard.guard
        texts = [p if p is not None else "" for p in prompts]
        n = len(texts)
        for name in self._guard_extra_prompt_args:  # e.g. SDXL's prompt_2 reaches the second encoder
            extra = params.get(name)
            if extra is None:
                continue
            extra_list = [extra] * n if isinstance(extra, str) else list(extra)
            if len(extra_list) != n or not all(isinstance(x, str) for x in extra_list):
                raise GuardInputError(f"`{name}` must be a string or a list of {n} strings")
            texts = [f"{a}, {b}" if b and b != a else a for a, b in zip(texts, extra_list)]
        if all(p is None for p in prompts):
            from guard.screen.screen import ScreenResult

            return [ScreenResult(i, "allow", None, None, None, 0.0, None, reasons=["screen disabled by policy"])
                    for i in range(len(prompts))]
        results = guard.screen_prompts(texts, report)
        from guard.screen.generator_space import needs_generator_space

        gs_cfg = guard.policy.screen.generator_space
        if guard.policy.screen.enabled and (gs_cfg.enabled or needs_generator_space(self)):
            self._guard_generator_space(texts, results, report)
        return results

    def _guard_generator_space(self, texts, results, report) -> None:
        """Second opinion in the generator's own text-encoder space (optional stage): it may raise a
        prompt's decision, never lower it. Fails closed like the text screen."""
        from guard.screen.generator_space import get_generator_space_screen
        from guard.screen.screen import ConceptScore

        guard = self.guard.guard
        t0 = time.perf_counter()
        try:
            gres = get_generator_space_screen(self, guard.policy).screen_batch(texts)
        except GuardInputError:
            raise
        except Exception as e:  # includes a calibration made for another model
            msg = f"generator-space screen failed: {type(e).__name__}: {e}"
            report.errors.append(msg)
            if not guard.policy.fail_open:
                for r in results:
                    r.decision, r.reasons = "block", [msg + " (fail closed)"] + r.reasons
            gres = []
        rank = {"allow": 0, "escalate": 1, "block": 2}
        for r, g in zip(results, gres):
            if g.decision == "allow":
                continue
            r.matches.append(ConceptScore(g.concept, g.category, g.decision, g.score, g.threshold, g.phrase,
                                          "generator_space"))
            r.reasons.append(g.reasons[0])
            if rank[g.decision] > rank[r.decision]:
                r.decision, r.concept, r.category = g.decision, g.concept, g.category
                r.score, r.threshold, r.phrase = g.score, g.threshold, g.phrase
        report.timings_ms["generator_space"] = (time.perf_counter() - t0) * 1000

    def _guard_input_images(self, params: dict, n_prompts: int) -> list[tuple[str, list[Any], bool]]:
        """(argument, images, per_prompt) for each input-image argument that was given."""
        out = []
        for name in self._guard_image_args:
            img = params.get(name)
            if img is None:
                continue
            if isinstance(img, (list, tuple)):
                items = list(img)
            elif isinstance(img, (torch.Tensor, np.ndarray)) and img.ndim == 4:
                items = [img[i] for i in range(img.shape[0])]
            else:
                items = [img]
            if not items:
                raise GuardInputError(f"`{name}` is an empty list")
            per_prompt = len(items) == n_prompts and n_prompts > 1
            out.append((name, items, per_prompt))
        return out

    def _guard_screen_inputs(self, params: dict, screened, report) -> list[bool]:
        """Run the output classifiers on the input images; by ``input_images.action`` a flagged
        image blocks or escalates the prompts it belongs to. Returns per prompt: escalated by input."""
        guard = self.guard.guard
        n = len(screened)
        escalated = [False] * n
        cfg = guard.policy.input_images
        if not cfg.enabled or not guard.output_check_enabled or not self._guard_image_args:
            return escalated
        for name, items, per_prompt in self._guard_input_images(params, n):
            if name == "mask_image":
                continue  # a mask is not content
            t0 = time.perf_counter()
            arrays = [to_rgb_uint8(im, where=f"`{name}` image {k}") for k, im in enumerate(items)]
            verdicts = guard.check_images(arrays, report)
            report.timings_ms["input_check"] = report.timings_ms.get("input_check", 0.0) + (
                time.perf_counter() - t0) * 1000
            for k, v in enumerate(verdicts):
                if not v.is_flagged:
                    continue
                targets = [k] if per_prompt else (list(range(n)) if len(items) == 1 else [k] if k < n else [])
                if not per_prompt and len(items) > 1:
                    targets = list(range(n))  # several images for every prompt: any flagged one counts
                for pi in targets:
                    why = f"input `{name}` image {k} flagged: " + ", ".join(v.flagged[:2])
                    if cfg.action == "block":
                        screened[pi].decision = "block"
                        screened[pi].reasons.insert(0, why)
                    elif cfg.action == "escalate":
                        escalated[pi] = True
                        screened[pi].reasons.append(why + " (escalated)")
                        if screened[pi].decision == "allow":
                            screened[pi].decision = "escalate"
                    else:
                        screened[pi].reasons.append(why + " (allowed by policy)")
        return escalated

    def _guard_guidance_state(self, screened, input_escalated, allowed, nipp, sub, report):
        guard = self.guard.guard
        if not guard.policy.guidance.enabled:
            return None
        esc = [screened[i].decision == "escalate" or input_escalated[i] for i in allowed]
        rows = rows_to_guide(guard.policy, self._guard_kind, esc, nipp)
        try:
            return prepare_guidance(self, guard.policy, self._guard_kind, rows, sub)
        except Exception as e:  # a defence failed: fail closed unless the policy says otherwise
            if guard.policy.fail_open:
                report.errors.append(f"negative guidance unavailable: {type(e).__name__}: {e}")
                return None
            raise

    def _guard_subset(self, params: dict, keep: list[int], n_prompts: int, nipp: int) -> dict:
        """The call's arguments restricted to the prompts in ``keep`` (per-prompt and per-image
        arguments are sliced; shared ones pass through)."""
        sub = dict(params)
        if len(keep) == n_prompts:
            return sub
        name = self._guard_prompt_arg
        if isinstance(sub.get(name), (list, tuple)):
            sub[name] = [sub[name][i] for i in keep]
        for key in ("negative_prompt",) + self._guard_extra_prompt_args + ("negative_prompt_2",):
            if isinstance(sub.get(key), (list, tuple)) and len(sub[key]) == n_prompts:
                sub[key] = [sub[key][i] for i in keep]
        for key in self._guard_image_args:  # one input image per prompt: keep the allowed ones
            img = sub.get(key)
            if isinstance(img, (list, tuple)) and len(img) == n_prompts:
                sub[key] = [img[i] for i in keep]
            elif isinstance(img, (torch.Tensor, np.ndarray)) and img.ndim == 4 and img.shape[0] == n_prompts:
                sub[key] = img[keep]
        for key in ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                    "negative_pooled_prompt_embeds"):
            t = sub.get(key)
            if t is not None and int(t.shape[0]) == n_prompts:
                sub[key] = t[keep]
        image_rows = [i * nipp + j for i in keep for j in range(nipp)]
        gen = sub.get("generator")
        if isinstance(gen, (list, tuple)):
            if len(gen) == n_prompts * nipp:
                sub["generator"] = [gen[r] for r in image_rows]
            elif len(gen) == n_prompts:
                sub["generator"] = [gen[i] for i in keep]
        lat = sub.get("latents")
        if lat is not None and int(lat.shape[0]) == n_prompts * nipp:
            sub["latents"] = lat[image_rows]
        return sub

    def _guard_decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """Decode latents to pixels in [0, 1] (N, H, W, 3) only to classify them."""
        vae = self.vae
        with torch.no_grad():
            z = latents.to(device=vae.device, dtype=vae.dtype) / vae.config.scaling_factor
            image = vae.decode(z, return_dict=False)[0]
        return self.image_processor.postprocess(image, output_type="np")

    def _guard_image_size(self, params: dict) -> tuple[int, int]:
        f = getattr(self, "vae_scale_factor", 8)
        default = self.unet.config.sample_size * f
        h = params.get("height") or default
        w = params.get("width") or default
        return int(h), int(w)

    def _guard_black(self, params: dict, output_type: str, template: Any) -> Any:
        """A black image for a blocked slot, matching the output type and shape of the others."""
        if template is not None:
            return blank_like(template)
        h, w = self._guard_image_size(params)
        if output_type == "pil":
            return PIL.Image.new("RGB", (w, h))
        if output_type == "np":
            return np.zeros((h, w, 3), dtype=np.float32)
        if output_type == "pt":
            return torch.zeros((3, h, w), dtype=torch.float32)
        f = getattr(self, "vae_scale_factor", 8)
        c = self.unet.config.in_channels if getattr(self.unet.config, "in_channels", 4) == 4 else 4
        c = getattr(self.vae.config, "latent_channels", c)
        return torch.zeros((c, h // f, w // f), dtype=self.unet.dtype)

    def _guard_pack(self, images: list[Any], output_type: str) -> Any:
        """From per-image items (pt tensors in [0, 1] or latents) to what the parent returns."""
        if output_type == "latent":
            return torch.stack([im.to(images[0].device) for im in images])
        if output_type == "pt":
            return torch.stack([im.to(images[0].device) for im in images])
        arrs = [im.detach().float().cpu().permute(1, 2, 0).numpy() if isinstance(im, torch.Tensor) else
                (np.asarray(im, dtype=np.float32) / 255.0 if isinstance(im, PIL.Image.Image) else im)
                for im in images]
        batch = np.stack(arrs).astype(np.float32)
        if output_type == "np":
            return batch
        return self.image_processor.numpy_to_pil(batch)

    def _guard_finish_report(self, report: GuardReport, screened, verdicts, nipp, allowed, parent_nsfw) -> None:
        allowed_pos = {p: k for k, p in enumerate(allowed)}
        idx = 0
        for pi, s in enumerate(screened):
            for j in range(nipp):
                if pi not in allowed_pos:
                    report.images.append(ImageReport(
                        index=idx, prompt_index=pi, screen=s, output=None, decision="blocked",
                        blocked_by="error" if s.concept is None and any("failed" in r for r in s.reasons)
                        else "screen", action="blank", reasons=list(s.reasons[:1])))
                else:
                    k = allowed_pos[pi] * nipp + j
                    v: OutputVerdict | None = verdicts[k] if verdicts is not None else None
                    reasons = []
                    if s.decision == "escalate":
                        reasons.append("prompt escalated: " + (s.reasons[0] if s.reasons else ""))
                    if parent_nsfw and parent_nsfw[k]:
                        reasons.append("the pipeline's own safety checker flagged the image")
                    if v is not None and v.is_flagged:
                        reasons.extend(v.flagged)
                        decision = "blocked" if v.action in BLOCKING_ACTIONS else "flagged"
                        report.images.append(ImageReport(idx, pi, s, v, decision, "output", v.action, reasons))
                    else:
                        decision = "flagged" if (parent_nsfw and parent_nsfw[k]) else "allowed"
                        report.images.append(ImageReport(idx, pi, s, v, decision, None, "none", reasons))
                idx += 1
