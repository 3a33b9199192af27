"""Negative guidance inside the denoising loop, through forward hooks on the UNet.

A guarded call sets a per-thread :class:`GuidanceState`; the UNet's forward-pre hook then appends
one batch slot per image (or per image and concept) to the pipeline's own UNet call — latents and
extra conditioning copied from the conditional branch, the concept's text embedding in place of the
prompt's — and the forward hook takes the concept prediction ε_c back out and rewrites the
pipeline's branches before its classifier-free guidance combines them:

* ``ace``: ε_u' = ε_u + η_u·(ε_c − ε_u),  ε_t' = ε_t − η_t·(ε_c − ε_u); with guidance scale s the
  pipeline then computes ε_u + s(ε_t − ε_u) − ((s − 1)·η_u + s·η_t)·(ε_c − ε_u). For
  instruct-pix2pix the image-conditioned branch plays the role of ε_u.
* ``sld``: Safe Latent Diffusion's element-wise scaled safety guidance with threshold, warm-up and
  momentum, folded into ε_t so that the pipeline's own CFG yields SLD's update.

Hooks (not a replaced ``forward``) survive ``enable_model_cpu_offload``; with no guarded call active
in the calling context they pass everything through untouched, so a plain pipeline sharing the UNet
is not affected. The state lives in a :class:`contextvars.ContextVar`: each thread (and each asyncio
task) sees only its own call's state, so two pipelines sharing one UNet in two threads never mix
their guidance. Steps are counted from the scheduler's timesteps, not from UNet calls.

IP-Adapter conditioning (``added_cond_kwargs["image_embeds"]``, a list of per-adapter tensors) is
extended like every other batched input: the concept slots copy the conditional branch's rows.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

_STATE: contextvars.ContextVar[GuidanceState | None] = contextvars.ContextVar("guard_guidance", default=None)


@dataclass
class GuidanceState:
    unet: Any
    mode: str  # ace | sld
    layout: str  # cfg (uncond, cond) | pix2pix (text, image, uncond); "single" when CFG is off
    concept_embeds: torch.Tensor  # (m, L, D): m concept branches
    row_mask: torch.Tensor  # (n,) 1 where the image gets guidance
    eta_uncond: float = 1.0
    eta_cond: float = 1.0
    warmup_steps: int = 0
    timesteps: torch.Tensor | None = None
    uncond_embeds: torch.Tensor | None = None  # (1, L, D), for CFG off
    concept_pooled: torch.Tensor | None = None  # (m, P) SDXL text_embeds of the concepts
    uncond_pooled: torch.Tensor | None = None
    sld: dict = field(default_factory=dict)
    # bookkeeping
    split: tuple | None = None
    applied_steps: list[int] = field(default_factory=list)
    unet_calls: int = 0
    extra_rows: int = 0
    momentum: dict = field(default_factory=dict)  # step index -> momentum before that step

    scheduler: Any = None
    first_index: int | None = None
    #: set when a hook failed: from then on the hooks pass everything through, and the runner blocks
    #: the images (fail closed) or reports a warning (``fail_open: true``)
    error: str | None = None

    def step_index(self, t) -> int:
        """Denoising step of timestep ``t``: its first position in the scheduler's timesteps (so a
        scheduler that calls the UNet twice on one timestep, like PNDM, counts one step), relative
        to the first step this call ran (img2img starts part-way)."""
        ts = getattr(self.scheduler, "timesteps", None) if self.scheduler is not None else self.timesteps
        if ts is None:
            return self.unet_calls
        tv = float(t.flatten()[0]) if torch.is_tensor(t) else float(t)
        # consecutive repeats are one step (PNDM runs its first step's timestep twice)
        steps = torch.unique_consecutive(ts.detach().to("cpu").float())
        hits = (steps == tv).nonzero()
        idx = int(hits[0]) if len(hits) else self.unet_calls
        if self.first_index is None:
            self.first_index = idx
        return idx - self.first_index


def active_state() -> GuidanceState | None:
    return _STATE.get()


@contextmanager
def guidance_active(state: GuidanceState | None):
    """Make ``state`` the calling context's guidance for the duration of a pipeline call."""
    token = _STATE.set(state)
    try:
        yield state
    finally:
        _STATE.reset(token)


# --------------------------------------------------------------------------------------- hooks


def _branches(state: GuidanceState, batch: int) -> tuple[int, int]:
    k = {"cfg": 2, "pix2pix": 3, "single": 1}[state.layout]
    if batch % k:
        raise RuntimeError(f"guard guidance: UNet batch {batch} is not a multiple of {k} branches")
    return k, batch // k


def _failed(st: GuidanceState, where: str, e: Exception) -> None:
    import traceback

    frame = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    at = f" at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}" if frame else ""
    st.error = f"negative guidance failed in the UNet {where} hook: {type(e).__name__}: {e}{at}"
    st.split = None


def _pre_hook(module, args, kwargs):
    st = active_state()
    if st is None or module is not st.unet or st.error is not None:
        return None
    try:
        return _expand(st, args, kwargs)
    except Exception as e:  # a defence failed: record it, let the pipeline run; the runner decides
        _failed(st, "pre-forward", e)
        return None


def _post_hook(module, args, kwargs, output):
    st = active_state()
    if st is None or module is not st.unet or st.split is None:
        return None
    B = st.split[0]
    try:
        return _combine(st, output)
    except Exception as e:
        _failed(st, "forward", e)
        if isinstance(output, tuple):  # hand back the pipeline's own rows so its loop can go on
            return (output[0][:B],) + tuple(output[1:])
        output.sample = output.sample[:B]
        return output


def _expand(st: GuidanceState, args, kwargs):
    args = list(args)
    sample = args[0] if args else kwargs["sample"]
    t = args[1] if len(args) > 1 else kwargs["timestep"]
    ehs = args[2] if len(args) > 2 else kwargs["encoder_hidden_states"]
    B = int(sample.shape[0])
    k, n = _branches(st, B)
    step = st.step_index(t)
    st.unet_calls += 1
    st.split = None
    if n != int(st.row_mask.shape[0]):
        raise RuntimeError(f"guard guidance: expected {st.row_mask.shape[0]} images per branch, UNet got {n}")
    needs_branch = bool(st.row_mask.any()) and (st.mode == "sld" or step >= st.warmup_steps)
    if not needs_branch:
        return None
    m = int(st.concept_embeds.shape[0])
    cond = slice(n, 2 * n) if st.layout == "cfg" else slice(0, n)  # pix2pix: text branch first
    ce = st.concept_embeds.to(device=ehs.device, dtype=ehs.dtype)
    extra_sample = [sample[cond]] * m
    extra_ehs = [ce[j : j + 1].expand(n, -1, -1) for j in range(m)]
    if st.layout == "single":  # CFG off: add the unconditional branch ACE/SLD need
        ue = st.uncond_embeds.to(device=ehs.device, dtype=ehs.dtype)
        extra_sample = [sample[cond]] + extra_sample
        extra_ehs = [ue.expand(n, -1, -1)] + extra_ehs
    new_sample = torch.cat([sample] + extra_sample, dim=0)
    new_ehs = torch.cat([ehs] + extra_ehs, dim=0)
    n_extra = new_sample.shape[0] - B
    if torch.is_tensor(t) and t.ndim > 0 and t.shape[0] == B:
        t = torch.cat([t, t[cond].repeat(n_extra // n, *([1] * (t.ndim - 1)))], dim=0)
    # batched extra conditioning: copy the conditional branch's rows
    new_kwargs = dict(kwargs)
    for key in ("timestep_cond", "class_labels"):
        v = kwargs.get(key)
        if torch.is_tensor(v) and v.shape[0] == B:
            new_kwargs[key] = torch.cat([v, v[cond].repeat(n_extra // n, *([1] * (v.ndim - 1)))], dim=0)
    added = kwargs.get("added_cond_kwargs")
    if added:
        new_added = {}
        for key, v in added.items():
            if isinstance(v, (list, tuple)) and v and all(torch.is_tensor(x) and x.shape[0] == B for x in v):
                # IP-Adapter image embeddings: one tensor per adapter, each batched like the sample
                new_added[key] = type(v)(
                    torch.cat([x, x[cond].repeat(n_extra // n, *([1] * (x.ndim - 1)))], dim=0) for x in v
                )
                continue
            if not (torch.is_tensor(v) and v.shape[0] == B):
                new_added[key] = v
                continue
            if key == "text_embeds" and st.concept_pooled is not None:
                pieces = [st.concept_pooled[j : j + 1].to(v.device, v.dtype).expand(n, -1) for j in range(m)]
                if st.layout == "single":
                    pieces = [st.uncond_pooled.to(v.device, v.dtype).expand(n, -1)] + pieces
                new_added[key] = torch.cat([v] + pieces, dim=0)
            else:
                new_added[key] = torch.cat([v, v[cond].repeat(n_extra // n, *([1] * (v.ndim - 1)))], dim=0)
        new_kwargs["added_cond_kwargs"] = new_added
    st.split = (B, n, k, m, step)
    st.extra_rows = n_extra
    # put everything back in the places the caller used
    if args:
        args[0] = new_sample
    else:
        new_kwargs["sample"] = new_sample
    if len(args) > 1:
        args[1] = t
    else:
        new_kwargs["timestep"] = t
    if len(args) > 2:
        args[2] = new_ehs
    else:
        new_kwargs["encoder_hidden_states"] = new_ehs
    return tuple(args), new_kwargs


def _combine(st: GuidanceState, output):
    B, n, _k, m, step = st.split
    st.split = None
    tup = isinstance(output, tuple)
    eps_all = output[0] if tup else output.sample
    eps, extra = eps_all[:B], eps_all[B:]
    mask = st.row_mask.to(device=eps.device, dtype=eps.dtype).view(n, *([1] * (eps.ndim - 1)))
    if st.layout == "single":
        e_u = extra[:n]
        concepts = extra[n:]
        e_t = eps[:n]
    elif st.layout == "cfg":
        e_u, e_t = eps[:n], eps[n : 2 * n]
        concepts = extra
    else:  # pix2pix: (text, image, uncond); the image branch is the reference for text guidance
        e_t, e_u = eps[:n], eps[n : 2 * n]
        concepts = extra
    e_cs = [concepts[j * n : (j + 1) * n] for j in range(m)]
    apply_now = step >= st.warmup_steps
    if st.mode == "ace":
        d = sum(ec - e_u for ec in e_cs)
        new_u = e_u + st.eta_uncond * d * mask
        new_t = e_t - st.eta_cond * d * mask
    else:  # sld
        p = st.sld
        g_total = torch.zeros_like(e_t)
        mom_key = step
        prev = st.momentum.get(mom_key)
        if prev is None:
            prev = st.momentum.get("_last", torch.zeros_like(e_t))
            st.momentum[mom_key] = prev
        mom = prev
        for ec in e_cs:
            diff = e_t - ec
            scale = torch.clamp(diff.abs() * p["scale"], max=1.0)
            scale = torch.where(diff >= p["threshold"], torch.zeros_like(scale), scale)
            g = (ec - e_u) * scale
            g = g + p["momentum_scale"] * mom
            g_total = g_total + g
        st.momentum["_last"] = p["mom_beta"] * mom + (1 - p["mom_beta"]) * g_total
        new_u = e_u
        new_t = e_t - g_total * mask if apply_now else e_t
    if apply_now:
        if not st.applied_steps or st.applied_steps[-1] != step:
            st.applied_steps.append(step)
    if st.layout == "single":
        new_eps = new_t
    elif st.layout == "cfg":
        new_eps = torch.cat([new_u, new_t], dim=0)
    else:
        new_eps = torch.cat([new_t, new_u, eps[2 * n : 3 * n]], dim=0)
    if tup:
        return (new_eps,) + tuple(output[1:])
    output.sample = new_eps
    return output


def install(unet) -> None:
    """Register guard's hooks on a UNet once (idempotent)."""
    if getattr(unet, "_guard_guidance_hooks", None):
        return
    h1 = unet.register_forward_pre_hook(_pre_hook, with_kwargs=True)
    h2 = unet.register_forward_hook(_post_hook, with_kwargs=True)
    unet._guard_guidance_hooks = (h1, h2)


def uninstall(unet) -> None:
    hooks = getattr(unet, "_guard_guidance_hooks", None)
    if hooks:
        for h in hooks:
            h.remove()
        unet._guard_guidance_hooks = None


def installed(unet) -> bool:
    return bool(getattr(unet, "_guard_guidance_hooks", None))
