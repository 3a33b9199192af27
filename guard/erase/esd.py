"""ESD: Erasing Concepts from Diffusion Models (Gandikota et al., 2023), fine-tuning.

For each iteration: draw a DDIM step count ``k``, partially denoise fresh noise for ``k`` steps with the
FROZEN model under the concept prompt (classifier-free guidance ``start_guidance``), giving ``x_t`` at the
matching timestep ``t``; then minimise

    ‖ε_θ'(x_t, c, t) − (ε_θ(x_t, ∅, t) − η·(ε_θ(x_t, c, t) − ε_θ(x_t, ∅, t)))‖²

over the trainable copy θ'. ESD-x trains the cross-attention parameters (``attn2``); ESD-u trains the
rest of the UNet except the time embedding (as the reference code's ``noxattn``). The original UNet is
used, unchanged, as the frozen model; training happens on a copy.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from guard.erase.methods import EraseJob, EraserMethod, MethodResult
from guard.erase.params import Param
from guard.errors import GuardError
from guard.textenc import encode_hidden

__all__ = ["ESD_METHODS", "ESD_U", "ESD_X", "EsdConfig", "esd_objective", "esd_train", "sample_xt", "trainable_names"]

ESD_METHODS = ("esd-x", "esd-u")


def trainable_names(unet: nn.Module, method: str) -> list[str]:
    """Names of the parameters ESD-x / ESD-u train."""
    names = []
    for n, _ in unet.named_parameters():
        is_x = ".attn2." in f".{n}"
        if method == "esd-x" and is_x:
            names.append(n)
        elif method == "esd-u" and not is_x and not n.startswith(("time_embedding", "time_embed")):
            names.append(n)
    if not names:
        raise GuardError(f"{method}: the UNet has no parameters to train for this method")
    return names


@dataclass
class EsdConfig:
    method: str = "esd-x"
    iterations: int = 1000
    lr: float = 1e-5
    eta: float = 1.0
    seed: int = 0
    ddim_steps: int = 50
    start_guidance: float = 3.0
    latent_size: int | None = None  # default: the UNet's sample_size
    checkpoint: str | None = None
    checkpoint_every: int = 50

    def resume_key(self) -> dict[str, Any]:
        """What must match to resume a checkpoint (``iterations`` may grow)."""
        return {
            k: getattr(self, k) for k in ("method", "lr", "eta", "seed", "ddim_steps", "start_guidance", "latent_size")
        }


def _scheduler(scheduler_config: dict, ddim_steps: int):
    from diffusers import DDIMScheduler

    s = DDIMScheduler.from_config(dict(scheduler_config))
    s.set_timesteps(ddim_steps)
    return s


def _eps(unet: nn.Module, x: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    return unet(x, t, encoder_hidden_states=emb, return_dict=False)[0]


@torch.no_grad()
def sample_xt(
    frozen: nn.Module,
    scheduler,
    emb_c: torch.Tensor,
    emb_u: torch.Tensor,
    steps: int,
    guidance: float,
    shape: tuple,
    generator: torch.Generator,
    device,
    dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Denoise fresh noise for ``steps`` DDIM steps with the frozen model under the concept (CFG).
    Returns ``(x_t, t)`` with ``t`` the timestep ``x_t`` is at."""
    x = torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
    x = x * scheduler.init_noise_sigma
    ts = scheduler.timesteps
    for i in range(steps):
        t = ts[i].to(device)
        inp = torch.cat([x, x])
        e = _eps(frozen, inp, t, torch.cat([emb_u, emb_c]))
        e_u, e_c = e.chunk(2)
        x = scheduler.step(e_u + guidance * (e_c - e_u), ts[i], x).prev_sample
    return x, ts[steps].reshape(1).to(device)


def esd_objective(
    trained: nn.Module,
    frozen: nn.Module,
    x: torch.Tensor,
    t: torch.Tensor,
    emb_c: torch.Tensor,
    emb_u: torch.Tensor,
    eta: float,
) -> torch.Tensor:
    """The ESD loss at ``(x_t, t)``; gradients flow into ``trained`` only."""
    with torch.no_grad():
        e = _eps(frozen, torch.cat([x, x]), t, torch.cat([emb_u, emb_c]))
        e_0, e_p = e.chunk(2)
        target = e_0 - eta * (e_p - e_0)
    e_n = _eps(trained, x.to(next(trained.parameters()).dtype), t, emb_c.to(next(trained.parameters()).dtype))
    return torch.nn.functional.mse_loss(e_n.float(), target.float())


def _step_generator(seed: int, step: int) -> torch.Generator:
    # one generator per step: a resumed run draws exactly what an uninterrupted one would
    return torch.Generator("cpu").manual_seed((int(seed) * 1_000_003 + int(step)) % (2**63 - 1))


def _save_checkpoint(
    path: str,
    step: int,
    cfg: EsdConfig,
    names: list[str],
    trained: nn.Module,
    opt: torch.optim.Optimizer,
    losses: list[float],
    concepts: Sequence[str],
) -> None:
    params = dict(trained.named_parameters())
    state = {
        "format": "guard.esd-checkpoint/1",
        "step": step,
        "resume_key": cfg.resume_key(),
        "concepts": list(concepts),
        "names": names,
        "params": {n: params[n].detach().cpu().clone() for n in names},
        "optimizer": opt.state_dict(),
        "losses": list(losses),
    }
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, p)


def esd_train(
    unet: nn.Module,
    emb_c: torch.Tensor,
    emb_u: torch.Tensor,
    scheduler_config: dict,
    cfg: EsdConfig,
    *,
    concepts: Sequence[str] = (),
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Run ESD on a copy of ``unet`` (left unchanged, used as the frozen model).

    ``emb_c``/``emb_u``: (1, L, D) text embeddings of the concept and of the empty prompt.
    Returns the changed parameters ``{name: new value (the UNet's dtype, CPU)}`` and run info
    (losses, resumed_from). With ``cfg.checkpoint`` set, progress is saved every
    ``checkpoint_every`` steps and at the end, and a run with the same settings resumes from it.
    """
    if cfg.method not in ESD_METHODS:
        raise GuardError(f"unknown ESD method {cfg.method!r}; choose one of {', '.join(ESD_METHODS)}")
    frozen = unet
    device = next(frozen.parameters()).device
    dtype = next(frozen.parameters()).dtype
    names = trainable_names(frozen, cfg.method)
    trained = copy.deepcopy(frozen).float()
    trained.train()
    name_set = set(names)
    for n, p in trained.named_parameters():
        p.requires_grad_(n in name_set)
    params = [p for n, p in trained.named_parameters() if n in name_set]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    losses: list[float] = []
    start = 0
    if cfg.checkpoint and Path(cfg.checkpoint).is_file():
        try:
            state = torch.load(cfg.checkpoint, map_location="cpu", weights_only=True)
        except Exception as e:
            raise GuardError(f"ESD checkpoint {cfg.checkpoint} cannot be read: {e}") from None
        if state.get("format") != "guard.esd-checkpoint/1":
            raise GuardError(f"{cfg.checkpoint} is not an ESD checkpoint written by guard")
        if (
            state["resume_key"] != cfg.resume_key()
            or state["names"] != names
            or list(state.get("concepts", [])) != list(concepts)
        ):
            raise GuardError(
                f"ESD checkpoint {cfg.checkpoint} was made with other settings "
                f"({state['resume_key']}, concepts {state.get('concepts')}); delete it or use the same settings"
            )
        cur = dict(trained.named_parameters())
        with torch.no_grad():
            for n in names:
                cur[n].copy_(state["params"][n])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
        losses = list(state["losses"])
    resumed_from = start
    sched = _scheduler(scheduler_config, cfg.ddim_steps)
    size = cfg.latent_size or int(frozen.config.sample_size)
    shape = (1, int(frozen.config.in_channels), size, size)
    emb_c = emb_c.to(device=device, dtype=dtype)
    emb_u = emb_u.to(device=device, dtype=dtype)
    from tqdm import tqdm

    bar = tqdm(
        range(start, cfg.iterations),
        desc=cfg.method.upper(),
        unit="step",
        disable=not progress,
        initial=start,
        total=cfg.iterations,
    )
    for step in bar:
        g = _step_generator(cfg.seed, step)
        k = int(torch.randint(0, cfg.ddim_steps, (1,), generator=g).item())
        x_t, t = sample_xt(frozen, sched, emb_c, emb_u, k, cfg.start_guidance, shape, g, device, dtype)
        opt.zero_grad(set_to_none=True)
        loss = esd_objective(trained, frozen, x_t, t, emb_c, emb_u, cfg.eta)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4g}")
        if on_step is not None:
            on_step(step, losses[-1])
        if cfg.checkpoint and ((step + 1) % cfg.checkpoint_every == 0):
            _save_checkpoint(cfg.checkpoint, step + 1, cfg, names, trained, opt, losses, concepts)
    if cfg.checkpoint and cfg.iterations > resumed_from:
        _save_checkpoint(cfg.checkpoint, cfg.iterations, cfg, names, trained, opt, losses, concepts)
    orig = dict(frozen.named_parameters())
    changed: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for n, p in trained.named_parameters():
            if n not in name_set:
                continue
            new = p.detach().to(dtype).cpu()
            if not torch.equal(new, orig[n].detach().cpu()):
                changed[n] = new.clone()
    info = {"losses": losses, "resumed_from": resumed_from, "trainable": len(names), "changed": len(changed)}
    return changed, info


class EsdMethod(EraserMethod):
    """ESD-x / ESD-u: fine-tuning against the concept's negatively guided noise prediction (minutes)."""

    preserves = False
    added_conditioning = False
    params = {
        "iterations": Param(1000, "training steps", lo=1, integer=True),
        "lr": Param(1e-5, "Adam learning rate", lo=0, lo_open=True),
        "eta": Param(1.0, "negative guidance η"),
        "seed": Param(0, "seed of the noise and timesteps", integer=True),
        "ddim_steps": Param(50, "DDIM steps of the sampling that gives x_t", lo=2, integer=True),
        "start_guidance": Param(3.0, "classifier-free guidance of that sampling"),
        "latent_size": Param(None, "latent size (default the UNet's sample_size)", lo=1, integer=True, optional=True),
        "checkpoint": Param(
            None, "checkpoint file; a run with the same settings resumes from it", kind="path", optional=True
        ),
        "checkpoint_every": Param(50, "steps between checkpoints", lo=1, integer=True),
    }

    def __init__(self, name: str):
        self.name = name

    def run(self, job: EraseJob) -> MethodResult:
        # ESD trains one prompt; several concepts are erased as one comma-joined prompt (as the paper's code
        # does for lists of concepts)
        prompt = ", ".join(job.concepts)
        emb, _ = encode_hidden(job.encoders, [prompt, ""], job.hidden_state)
        cfg = EsdConfig(method=self.name, **job.params)
        dt = next(job.unet.parameters()).dtype
        changed, info = esd_train(
            job.unet,
            emb[:1].to(dt),
            emb[1:].to(dt),
            dict(job.pipe.scheduler.config),
            cfg,
            concepts=job.concepts,
            progress=job.progress,
        )
        if not changed:
            raise GuardError(f"{self.name}: training changed no parameter (learning rate {cfg.lr} too small?)")
        hyper = {k: v for k, v in job.params.items() if k not in ("checkpoint", "checkpoint_every")}
        hyper.update(
            latent_size=cfg.latent_size or int(job.unet.config.sample_size),
            prompt=prompt,
            hidden_state=job.hidden_state,
            trainable=info["trainable"],
            resumed_from=info["resumed_from"],
            final_losses=[round(x, 6) for x in info["losses"][-10:]],
        )
        return MethodResult(hyper, full=changed)


ESD_X = EsdMethod("esd-x")
ESD_U = EsdMethod("esd-u")
