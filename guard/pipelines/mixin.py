"""``GuardedPipelineMixin``: the guard around any diffusers pipeline's ``__call__``.

For each call: validate the inputs, hand the request to :meth:`guard.core.Guard.run` (which runs the
defence stages — prompt and generator-space screens, input images, guidance planning, the output
check — applies fail-closed and writes the audit lines), denoise only the allowed prompts (a blocked
prompt never reaches the UNet), put black images in the blocked slots, and return the parent's
output type with a ``guard_report``. The pipeline-specific parts live here: which arguments are
prompts and images, slicing a batch, decoding latents, packing outputs.
"""

from __future__ import annotations

import inspect
import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.pipelines.stable_diffusion.pipeline_output import StableDiffusionPipelineOutput

from guard.errors import GuardError, GuardInputError
from guard.output.check import blank_like
from guard.pipelines.component import GuardComponent
from guard.policy import PolicySource
from guard.report import GuardReport
from guard.stages import InputImages, Request

logger = logging.getLogger(__name__)

_OUTPUT_TYPES = ("pil", "np", "pt", "latent")

_CALL_NOTE = """

Guarded by ``guard``: every prompt is screened before denoising (blocked ones never reach the UNet and
come back black), input images and every generated image are checked by the policy's classifiers,
and the result carries ``guard_report`` (also with ``return_dict=False``: a tuple with ``.guard_report``
and ``.nsfw_content_detected``). One audit line is written per image. One call at a time per
pipeline: use ``pipe.for_thread()`` for another thread.
"""

_BUSY: set[int] = set()
_BUSY_LOCK = threading.Lock()


@contextmanager
def _exclusive(pipe: Any):
    """Refuse a second call on the same pipeline (or on another sharing its scheduler) while one runs:
    diffusers pipelines keep per-call state on themselves and their schedulers."""
    keys = {id(pipe), id(getattr(pipe, "scheduler", None))}
    with _BUSY_LOCK:
        if keys & _BUSY:
            raise GuardError(
                f"{type(pipe).__name__} is already running a call (in another thread, or its scheduler is "
                "shared with a pipeline that is); diffusers pipelines and schedulers are not thread-safe. "
                "Use one pipeline per thread: `pipe.for_thread()` gives a copy with its own scheduler and "
                "tokenizer that shares the weights and the guard"
            )
        _BUSY.update(keys)
    try:
        yield
    finally:
        with _BUSY_LOCK:
            _BUSY.difference_update(keys)


def _parent_call(cls: type):
    """The first class after the mixin in ``cls``'s MRO that defines ``__call__`` (the diffusers one)."""
    mro = cls.__mro__
    if GuardedPipelineMixin not in mro:
        return None
    for klass in mro[mro.index(GuardedPipelineMixin) + 1 :]:
        if "__call__" in klass.__dict__:
            return klass.__dict__["__call__"]
    return None


class GuardedTuple(tuple):
    """What a guarded call returns with ``return_dict=False``: the parent's tuple (unpacks the same),
    plus ``guard_report`` and ``nsfw_content_detected`` (SDXL's tuple has no flags of its own)."""

    guard_report: GuardReport | None
    nsfw_content_detected: list[bool] | None

    def __new__(cls, items, guard_report: GuardReport | None = None, nsfw_content_detected: list[bool] | None = None):
        t = super().__new__(cls, items)
        t.guard_report = guard_report
        t.nsfw_content_detected = nsfw_content_detected
        return t


@dataclass
class GuardedPipelineOutput(StableDiffusionPipelineOutput):
    """``StableDiffusionPipelineOutput`` plus the guard's report of every decision."""

    guard_report: GuardReport | None = None


class GuardedPipelineMixin:
    """Mixed into a subclass of a diffusers pipeline class, before it in the bases."""

    #: name of the argument holding the text prompt in the parent's ``__call__``
    _guard_prompt_arg = "prompt"
    #: further prompt arguments that reach a text encoder (SDXL's ``prompt_2``): screened too
    _guard_extra_prompt_args: tuple[str, ...] = ()
    #: input images of editing pipelines: screened by the output classifiers, sliced with the batch
    _guard_image_args: tuple[str, ...] = ()
    #: image inputs that condition every prompt (not sliced): checked like the others
    _guard_shared_image_args: tuple[str, ...] = ("ip_adapter_image",)
    #: image arguments that are always VAE latents (decoded before they are classified)
    _guard_latent_args: tuple[str, ...] = ()
    #: whether latents given as images carry the VAE scaling factor (instruct-pix2pix's do not)
    _guard_latents_scaled = True
    #: text2img | img2img | inpaint | pix2pix | sdxl | sdxl-img2img
    _guard_kind = "text2img"
    _guard_output_cls = GuardedPipelineOutput

    # ------------------------------------------------------------------ construction

    def _guard_register(self, guard: GuardComponent | None) -> None:
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

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``save_pretrained`` of the parent, with the UNet saved as the base model: the policy's erasers
        are undone in the saved copy (the live weights stay erased), because the saved policy names them
        and loading applies them again, fingerprint-checked against the base weights."""
        from guard.erase.weights import erasure_stack, unet_of

        stack = erasure_stack(self) if getattr(self, "unet", None) is not None else []
        if not stack:
            return super().save_pretrained(save_directory, *args, **kwargs)
        by_hand = [e for e in stack if e.get("source") != "policy"]
        if by_hand:
            raise GuardError(
                f"{len(by_hand)} erasure(s) applied by hand (guard.erase / apply_erasure) are not in the "
                "policy, so a saved pipeline could not restore them; list them under the policy's `erasers` "
                "or revert them (guard.revert_erasure) before saving"
            )
        params = dict(unet_of(self).named_parameters())
        edited = {n: params[n].detach().clone() for e in stack for n in e["originals"]}
        with torch.no_grad():
            for e in reversed(stack):  # back to the base weights, newest edit first
                for n, v in e["originals"].items():
                    params[n].copy_(v.to(params[n].device))
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            with torch.no_grad():
                for n, v in edited.items():
                    params[n].copy_(v)

    # ------------------------------------------------------------------ policy access

    @property
    def guard_policy(self):
        """The resolved :class:`guard.policy.Policy` this pipeline runs under."""
        return self.guard_runner.policy

    @property
    def guard_runner(self):
        """The :class:`guard.core.Guard` that runs this pipeline's defence stages."""
        return self.guard.guard

    def set_policy(self, policy: PolicySource) -> None:
        """Replace the policy (validated, and its erasers applied, before anything changes)."""
        from guard.erase.wiring import apply_policy_erasers

        comp = GuardComponent.from_policy(policy)
        apply_policy_erasers(self, comp.guard.policy)
        self.register_modules(guard=comp.to(self.device))

    # ------------------------------------------------------------------ the call

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give each guarded class a ``__call__`` with its parent's signature and docstring, so
        ``help()``, IDEs and ``inspect.signature`` show the diffusers arguments."""
        super().__init_subclass__(**kwargs)
        if "__call__" in cls.__dict__:
            return
        parent = _parent_call(cls)
        if parent is None:
            return

        def __call__(self, *args: Any, **kw: Any):
            return self._guarded_call(args, kw)

        __call__.__signature__ = inspect.signature(parent)
        __call__.__doc__ = (inspect.getdoc(parent) or "") + _CALL_NOTE
        __call__.__qualname__ = f"{cls.__qualname__}.__call__"
        __call__.__module__ = cls.__module__
        cls.__call__ = __call__

    def __call__(self, *args: Any, **kwargs: Any):
        return self._guarded_call(args, kwargs)

    def _guard_parent_call(self):
        parent = _parent_call(type(self))
        if parent is None:
            raise TypeError(f"{type(self).__name__} has no pipeline __call__ to guard")
        return parent

    def for_thread(self):
        """A copy for another thread: same weights and guard, its own scheduler and tokenizer(s)
        (neither is thread-safe). One guarded pipeline runs one call at a time."""
        import copy

        extra = {"scheduler": type(self.scheduler).from_config(self.scheduler.config)}
        for name in ("tokenizer", "tokenizer_2"):
            tok = getattr(self, name, None)
            if tok is not None:
                extra[name] = copy.deepcopy(tok)
        return type(self).from_pipe(self, **extra)

    def _guarded_call(self, args: tuple, kwargs: dict):
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
        with _exclusive(self):
            return self._guarded_call_locked(parent_call, params)

    def _guarded_call_locked(self, parent_call, params: dict):
        guard = self.guard_runner
        prompts, _single = self._guard_prompts(params)
        n_prompts = len(prompts)
        nipp = params.get("num_images_per_prompt")
        nipp = 1 if nipp is None else nipp
        if not isinstance(nipp, int) or isinstance(nipp, bool) or nipp < 1:
            raise GuardInputError(f"num_images_per_prompt must be a positive integer, got {nipp!r}")
        output_type = params.get("output_type") or "pil"
        if output_type not in _OUTPUT_TYPES:
            raise GuardInputError(f"output_type must be one of {', '.join(_OUTPUT_TYPES)}, got {output_type!r}")
        return_dict = params.get("return_dict", True)
        texts = self._guard_texts(prompts, params)
        req = Request(
            prompts=prompts,
            texts=texts,
            pipeline=type(self).__name__,
            pipe=self,
            kind=self._guard_kind,
            images_per_prompt=nipp,
            input_images=self._guard_input_images(params, n_prompts),
            params=params,
            output_latent=output_type == "latent",
            decode=self._guard_decode_latents,
        )
        both = params.get(self._guard_prompt_arg) is not None and params.get("prompt_embeds") is not None

        def generate(r: Request) -> None:
            sub = self._guard_subset(params, r.allowed, n_prompts, nipp)
            sub["output_type"] = "latent" if output_type == "latent" else "pt"
            sub["return_dict"] = True
            if both:  # the text was screened; diffusers takes the embeddings alone
                for name in (self._guard_prompt_arg,) + self._guard_extra_prompt_args:
                    sub[name] = None
            self._guard_wrap_callback(sub)
            out = parent_call(self, **sub)
            st = r.guidance
            if st is not None:
                r.report.notes.append(
                    f"negative guidance ({st.mode}, layout {st.layout}) on "
                    f"{int(st.row_mask.sum())} of {len(st.row_mask)} image(s), steps {st.applied_steps}, "
                    f"+{st.extra_rows} UNet batch rows per step"
                    + (
                        " (classifier-free guidance was off: an unconditional branch was added)"
                        if st.layout == "single"
                        else ""
                    )
                )
            r.generated = list(out.images)
            nsfw = getattr(out, "nsfw_content_detected", None)
            r.parent_nsfw = list(nsfw) if nsfw is not None else [False] * len(r.generated)

        if both:
            req.report = guard.new_report(type(self).__name__)
            req.report.notes.append(
                "`prompt_embeds` were given with `prompt`: the screen read the text, "
                "the pipeline was given only the embeddings"
            )
        guard.run(req, generate)
        report = req.report

        # assemble in request order: generated images (actions applied by the runner), black slots
        final: list[Any] = []
        nsfw_out: list[bool] = []
        pos = {p: k for k, p in enumerate(req.allowed)} if req.generated else {}
        template = req.generated[0] if req.generated else None
        for pi in range(n_prompts):
            for j in range(nipp):
                im = report.images[pi * nipp + j]
                if pi in pos:
                    k = pos[pi] * nipp + j
                    final.append(req.generated[k])
                    nsfw_out.append(im.decision != "allowed")
                else:
                    final.append(self._guard_black(params, output_type, template))
                    nsfw_out.append(True)
        images = self._guard_pack(final, output_type)
        if not return_dict:
            items = (images,) if self._guard_kind in ("sdxl", "sdxl-img2img") else (images, nsfw_out)
            return GuardedTuple(items, guard_report=report, nsfw_content_detected=nsfw_out)
        return self._guard_output_cls(images=images, nsfw_content_detected=nsfw_out, guard_report=report)

    def _guard_wrap_callback(self, sub: dict) -> None:
        """Wrap ``callback_on_step_end`` so that a callback which changes the conditioning the screen
        cleared (prompt embeddings, pooled embeddings, image latents, masks...) is refused: the call
        raises :class:`GuardError` (and is audited) instead of denoising on unscreened conditioning.
        ``latents`` may change: what they become is what the output check sees."""
        cb = sub.get("callback_on_step_end")
        if cb is None:
            return
        try:
            from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
        except ImportError:  # pragma: no cover - older diffusers
            MultiPipelineCallbacks = PipelineCallback = ()  # type: ignore
        if PipelineCallback and isinstance(cb, (PipelineCallback, MultiPipelineCallbacks)):
            sub["callback_on_step_end_tensor_inputs"] = list(cb.tensor_inputs)
        watched = [k for k in (sub.get("callback_on_step_end_tensor_inputs") or ["latents"]) if k != "latents"]
        if not watched:
            return

        def guarded_callback(pipe, step, timestep, callback_kwargs):
            before = {
                k: callback_kwargs[k].detach().clone() for k in watched if torch.is_tensor(callback_kwargs.get(k))
            }
            out = cb(pipe, step, timestep, callback_kwargs)
            returned = out if isinstance(out, dict) else {}
            for k, b in before.items():
                now = returned.get(k, callback_kwargs.get(k))
                if not torch.is_tensor(now) or now.shape != b.shape or not torch.equal(now.detach().to(b.device), b):
                    raise GuardError(
                        f"callback_on_step_end changed `{k}` at step {step}: the guard screened the conditioning "
                        "the call was given, not this one, so the call is refused. Change prompts before the call "
                        "(they are screened), or leave conditioning tensors out of "
                        "`callback_on_step_end_tensor_inputs`"
                    )
            return out

        sub["callback_on_step_end"] = guarded_callback

    def _guard_prompts(self, params: dict) -> tuple[list[str | None], bool]:
        """The prompts as a list; validates types and pairing with negative prompts and embeddings."""
        name = self._guard_prompt_arg
        prompt = params.get(name)
        embeds = params.get("prompt_embeds")
        if prompt is None:
            if embeds is None:
                raise GuardInputError(f"pass `{name}` (a string or a list of strings) or `prompt_embeds`")
            if self.guard_runner.policy.screen.enabled:
                raise GuardInputError(
                    f"`prompt_embeds` without `{name}` cannot be screened; pass the prompt text too as "
                    f"`{name}=` (the guard screens the text, checks that the batch sizes match, and gives the "
                    "pipeline only the embeddings), or disable the screen in the policy"
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
                f"`prompt_embeds` has batch size {int(embeds.shape[0])} but {len(prompts)} prompt(s) were given"
            )
        neg = params.get("negative_prompt")
        if neg is not None:
            if isinstance(neg, (list, tuple)):
                if len(neg) != len(prompts):
                    raise GuardInputError(
                        f"`negative_prompt` has {len(neg)} entries but `{name}` has {len(prompts)}; "
                        "pass one negative prompt per prompt, or a single string"
                    )
                for i, n in enumerate(neg):
                    if not isinstance(n, str):
                        raise GuardInputError(f"`negative_prompt[{i}]` must be a string, got {type(n).__name__}")
            elif not isinstance(neg, str):
                raise GuardInputError(
                    f"`negative_prompt` must be a string or a list of strings, got {type(neg).__name__}"
                )
        return prompts, single

    def _guard_texts(self, prompts, params) -> list[str]:
        """What the screens read per prompt: the prompt, and the further prompts that reach a text
        encoder (SDXL's ``prompt_2``) when they differ."""
        texts = [p if p is not None else "" for p in prompts]
        n = len(texts)
        for name in self._guard_extra_prompt_args:
            extra = params.get(name)
            if extra is None:
                continue
            extra_list = (
                [extra] * n if isinstance(extra, str) else list(extra) if isinstance(extra, (list, tuple)) else None
            )
            if extra_list is None or len(extra_list) != n or not all(isinstance(x, str) for x in extra_list):
                raise GuardInputError(f"`{name}` must be a string or a list of {n} strings")
            texts = [f"{a}, {b}" if b and b != a else a for a, b in zip(texts, extra_list, strict=True)]
        return texts

    def _guard_input_images(self, params: dict, n_prompts: int) -> list[InputImages]:
        """Every image input of the call, for the input-image stage. Tensors with the VAE's latent
        channels are latents (as diffusers reads them) and are decoded before classification."""
        out = []
        latent_c = getattr(getattr(getattr(self, "vae", None), "config", None), "latent_channels", 4)
        for name in self._guard_image_args + self._guard_shared_image_args:
            img = params.get(name)
            if img is None or name == "mask_image":  # a mask is not content
                continue
            if isinstance(img, (list, tuple)):
                items = [x for it in img for x in (it if isinstance(it, (list, tuple)) else [it])]
            elif isinstance(img, (torch.Tensor, np.ndarray)) and img.ndim == 4:
                items = [img[i] for i in range(img.shape[0])]
            else:
                items = [img]
            if not items:
                raise GuardInputError(f"`{name}` is an empty list")
            latent = name in self._guard_latent_args or all(
                isinstance(x, torch.Tensor) and x.ndim == 3 and x.shape[0] == latent_c for x in items
            )
            per_prompt = name not in self._guard_shared_image_args and len(items) == n_prompts and n_prompts > 1
            out.append(
                InputImages(name, items, per_prompt=per_prompt, latent=latent, scaled=self._guard_latents_scaled)
            )
        return out

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
        for key in ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"):
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
        arrs = [
            im.detach().float().cpu().permute(1, 2, 0).numpy()
            if isinstance(im, torch.Tensor)
            else (np.asarray(im, dtype=np.float32) / 255.0 if isinstance(im, PIL.Image.Image) else im)
            for im in images
        ]
        batch = np.stack(arrs).astype(np.float32)
        if output_type == "np":
            return batch
        return self.image_processor.numpy_to_pil(batch)
