"""Erasure artifacts: what an eraser changed, as a small safetensors file, applied and reverted on a pipe.

File layout (safetensors):

* ``full/<param>``  – the new value of a UNet parameter (its dtype), when storing it whole is smaller;
* ``up/<param>`` + ``down/<k>`` – an exact low-rank delta ``new = original + up @ down`` (float32 factors;
  several parameters share one ``down``), when that is smaller;
* metadata ``guard.erasure`` (JSON): method, concepts, guides, preserved, hyperparameters, the base
  fingerprint, library versions, elapsed seconds, and which ``down`` each low-rank parameter uses.

The base fingerprint is sha256 over the edited parameters' ORIGINAL values (names, shapes, values as
float32, sorted by name). Variants for the same values cast to float16/bfloat16 are stored too, so an
artifact made on float32 weights also fits the same model loaded in half precision.

Applying pushes an entry (with exact copies of the values it overwrote) onto ``unet._guard_erasures``;
:func:`revert_erasure` pops it and restores those values bit for bit. An artifact applies when its
fingerprint matches the current weights (made on this model, possibly after earlier erasures: it
replaces / adds its delta) or the pristine weights before any guard erasure (made independently from
the same base: its delta is added on top of what is there).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import torch
from torch import nn

from guard.errors import GuardError, GuardInputError

FORMAT = "guard.erasure"
FORMAT_VERSION = 1
METHODS = ("uce", "rece", "esd-x", "esd-u")
STACK_ATTR = "_guard_erasures"

__all__ = [
    "METHODS",
    "Erasure",
    "applied_erasures",
    "apply_erasure",
    "erase",
    "erasure_info",
    "erasure_stack",
    "fingerprint",
    "revert_erasure",
    "sync_erasures",
]


# ------------------------------------------------------------------------------------ fingerprints


def fingerprint(tensors: dict[str, torch.Tensor], cast: Optional[torch.dtype] = None) -> str:
    """sha256 over (name, shape, values) of ``tensors`` sorted by name. Values are hashed as float32
    (exact for float32/float16/bfloat16 weights); with ``cast`` they are first rounded to that dtype and
    hashed as such (to predict the fingerprint of the same model loaded in half precision)."""
    h = hashlib.sha256(b"guard-erasure-fingerprint/1\0" + (str(cast).encode() if cast else b"") + b"\0")
    for name in sorted(tensors):
        t = tensors[name].detach().cpu()
        t = t.to(cast if cast is not None else torch.float32).contiguous()
        h.update(name.encode("utf-8") + b"\0" + repr(tuple(t.shape)).encode() + b"\0")
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _fingerprints(tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    return {"": fingerprint(tensors), "float16": fingerprint(tensors, torch.float16),
            "bfloat16": fingerprint(tensors, torch.bfloat16)}


def _current_fingerprints(current: dict[str, torch.Tensor]) -> set[str]:
    """The fingerprints that identify ``current`` weights: the canonical one, and the half-precision
    variant when they are half precision."""
    fps = {fingerprint(current)}
    dts = {t.dtype for t in current.values()}
    if len(dts) == 1 and next(iter(dts)) in (torch.float16, torch.bfloat16):
        fps.add(fingerprint(current, next(iter(dts))))
    return fps


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("guard", "torch", "diffusers", "transformers", "safetensors"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


# ------------------------------------------------------------------------------------ the artifact


@dataclass
class Erasure:
    """An erasure in memory: changed UNet parameters and metadata. ``save`` writes the artifact."""

    metadata: dict[str, Any]
    full: dict[str, torch.Tensor] = field(default_factory=dict)   # param -> new value
    up: dict[str, torch.Tensor] = field(default_factory=dict)     # param -> up (out × r)
    down: dict[str, torch.Tensor] = field(default_factory=dict)   # key -> down (r × in)
    lowrank: dict[str, str] = field(default_factory=dict)         # param -> down key
    path: Optional[str] = None

    @property
    def params(self) -> list[str]:
        return sorted(set(self.full) | set(self.up))

    @property
    def method(self) -> str:
        return self.metadata["method"]

    @property
    def base_fingerprint(self) -> str:
        return self.metadata["base_fingerprint"]

    def save(self, path: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"full/{k}": v.contiguous() for k, v in self.full.items()}
        tensors.update({f"up/{k}": v.contiguous() for k, v in self.up.items()})
        tensors.update({f"down/{k}": v.contiguous() for k, v in self.down.items()})
        meta = dict(self.metadata, lowrank=self.lowrank)
        tmp = p.with_name(p.name + ".tmp")
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION),
                                               FORMAT: json.dumps(meta, sort_keys=True)})
        os.replace(tmp, p)
        self.path = str(p)
        return p

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Erasure":
        """Read and check an artifact; any problem is a :class:`GuardError` naming the file."""
        from safetensors import safe_open

        p = Path(path) if isinstance(path, (str, os.PathLike)) else None
        if p is None:
            raise GuardInputError(f"an erasure artifact path must be a string or path, got {type(path).__name__}")
        if not p.is_file():
            raise GuardError(f"erasure artifact not found: {p}")
        try:
            with safe_open(str(p), framework="pt", device="cpu") as f:
                raw = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise GuardError(f"{p}: not a readable safetensors file ({type(e).__name__}: {e})") from None
        if raw.get("format") != FORMAT or FORMAT not in raw:
            raise GuardError(f"{p}: not a guard erasure artifact (no '{FORMAT}' metadata)")
        if raw.get("format_version") != str(FORMAT_VERSION):
            raise GuardError(f"{p}: erasure format version {raw.get('format_version')!r} is not supported "
                             f"(this guard reads version {FORMAT_VERSION})")
        try:
            meta = json.loads(raw[FORMAT])
        except ValueError as e:
            raise GuardError(f"{p}: corrupt erasure metadata ({e})") from None
        for key in ("method", "concepts", "base_fingerprint", "params"):
            if key not in meta:
                raise GuardError(f"{p}: erasure metadata lacks {key!r}")
        if meta["method"] not in METHODS:
            raise GuardError(f"{p}: unknown erasure method {meta['method']!r}")
        lowrank = meta.pop("lowrank", {}) or {}
        e = cls(metadata=meta, lowrank=dict(lowrank), path=str(p))
        for k, v in tensors.items():
            kind, _, name = k.partition("/")
            if kind == "full":
                e.full[name] = v
            elif kind == "up":
                e.up[name] = v
            elif kind == "down":
                e.down[name] = v
            else:
                raise GuardError(f"{p}: unexpected tensor {k!r} in an erasure artifact")
        for name in e.up:
            key = e.lowrank.get(name)
            if key is None or key not in e.down:
                raise GuardError(f"{p}: low-rank parameter {name!r} has no matching down factor")
            if e.up[name].shape[1] != e.down[key].shape[0]:
                raise GuardError(f"{p}: low-rank factors of {name!r} do not fit "
                                 f"({tuple(e.up[name].shape)} @ {tuple(e.down[key].shape)})")
        if sorted(meta["params"]) != e.params:
            raise GuardError(f"{p}: the tensors stored do not match the parameters the metadata lists")
        return e

    def summary(self) -> dict[str, Any]:
        m = self.metadata
        return {"path": self.path, "method": m["method"], "concepts": m["concepts"],
                "fingerprint": m["base_fingerprint"]}


def erasure_info(path: str | os.PathLike) -> dict[str, Any]:
    """The artifact's metadata plus what it stores (tensors, bytes)."""
    e = Erasure.load(path)
    info = dict(e.metadata)
    info["path"] = e.path
    info["stored"] = {
        "full": len(e.full), "low_rank": len(e.up), "down_factors": len(e.down),
        "bytes": sum(t.numel() * t.element_size() for d in (e.full, e.up, e.down) for t in d.values()),
    }
    return info


# ------------------------------------------------------------------------------------ building one


def _build(method: str, originals: dict[str, torch.Tensor], *, factor=None,
           full_new: Optional[dict[str, torch.Tensor]] = None, meta: dict[str, Any]) -> Erasure:
    """An :class:`Erasure` from either a shared-down factor edit (``factor``: FactorEdit, float64) or
    full new values. Each parameter is stored whichever way is smaller."""
    e = Erasure(metadata={})
    if factor is not None:
        lowrank_params = [n for n in factor.weights if factor.lowrank_is_smaller(n)]
        for name in lowrank_params:
            fdt = torch.float64 if originals[name].dtype == torch.float64 else torch.float32
            e.up[name] = factor.up(name).to(fdt)
        full_names = [n for n in factor.weights if n not in set(lowrank_params)]
        for name, v in factor.new_all(full_names).items():
            e.full[name] = v.to(originals[name].dtype).contiguous()
        if lowrank_params:
            f64 = any(e.up[n].dtype == torch.float64 for n in lowrank_params)
            e.down["0"] = factor.down.to(torch.float64 if f64 else torch.float32).contiguous()
            for name in lowrank_params:
                e.lowrank[name] = "0"
    for name, v in (full_new or {}).items():
        e.full[name] = v.to(originals[name].dtype)
    fps = _fingerprints({n: originals[n] for n in e.params})
    e.metadata = dict(
        meta, method=method, format_version=FORMAT_VERSION, params=e.params,
        shapes={n: list(originals[n].shape) for n in e.params},
        dtypes={n: str(originals[n].dtype).replace("torch.", "") for n in e.params},
        base_fingerprint=fps[""], base_fingerprint_float16=fps["float16"],
        base_fingerprint_bfloat16=fps["bfloat16"], versions=_versions(),
    )
    return e


def _unet_of(pipe: Any) -> nn.Module:
    unet = getattr(pipe, "unet", None)
    if isinstance(unet, nn.Module):
        return unet
    if isinstance(pipe, nn.Module) and hasattr(pipe, "config") and "cross_attention_dim" in pipe.config:
        return pipe
    raise GuardInputError(f"expected a diffusers pipeline with a UNet (or a UNet), got {type(pipe).__name__}")


def _str_list(value: Any, what: str, allow_empty: bool = True) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise GuardInputError(f"{what} must be a string or a list of strings, got {type(value).__name__}")
    out = []
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise GuardInputError(f"{what}[{i}] must be a string, got {type(v).__name__}")
        out.append(" ".join(v.split()))
    if not allow_empty and not out:
        raise GuardInputError(f"{what} is empty: give at least one")
    return out


def _number(value: Any, what: str, *, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False, integer: bool = False) -> Any:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or (not integer and not math.isfinite(value)):
        kind = "an integer" if integer else "a finite number"
        raise GuardInputError(f"{what} must be {kind}, got {value!r}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise GuardInputError(f"{what} must be {'>' if lo_open else '>='} {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise GuardInputError(f"{what} must be <= {hi}, got {value!r}")
    return value


def erase(
    pipe: Any,
    concepts: Sequence[str] | str,
    *,
    method: str = "uce",
    guides: Sequence[str] | str | None = None,
    preserve: Sequence[str] | None = None,
    out: str | os.PathLike | None = None,
    apply: bool = False,
    lamb: float = 0.1,
    erase_scale: float = 1.0,
    preserve_scale: Optional[float] = None,
    epochs: int = 3,
    embedding_lamb: float = 1e-3,
    with_to_k: bool = True,
    hidden_state: str = "auto",
    iterations: int = 1000,
    lr: float = 1e-5,
    eta: float = 1.0,
    seed: int = 0,
    ddim_steps: int = 50,
    start_guidance: float = 3.0,
    latent_size: Optional[int] = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    progress: bool = False,
    model_id: Optional[str] = None,
) -> Erasure:
    """Erase ``concepts`` from ``pipe``'s UNet and return the :class:`Erasure` (written to ``out`` when
    given). The pipeline is NOT changed unless ``apply=True`` (then it is applied like
    :func:`apply_erasure`, and revertible).

    ``method``: ``uce`` | ``rece`` (closed form, cross-attention K/V, seconds) | ``esd-x`` | ``esd-u``
    (fine-tuning; ``iterations``, ``lr``, ``eta``, ``seed``, ``checkpoint``). ``guides``: one guide for
    all concepts, or one per concept (default the empty prompt). ``preserve``: concepts to keep.
    UCE/RECE: ``lamb`` (λ), ``erase_scale`` (s_e), ``preserve_scale`` (s_p; default max(0.1, 1/#preserve)),
    RECE ``epochs`` and ``embedding_lamb`` (λ of the regenerating-embedding solve).
    """
    t0 = time.perf_counter()
    # ---- validate everything first
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise GuardInputError(f"unknown erasure method {method!r}; choose one of {', '.join(METHODS)}")
    method = method.lower()
    concepts_l = _str_list(concepts, "concepts", allow_empty=False)
    for i, c in enumerate(concepts_l):
        if not c:
            raise GuardInputError(f"concepts[{i}] is empty")
    guides_l = _str_list(guides, "guides")
    if not guides_l:
        guides_l = [""] * len(concepts_l)
    elif len(guides_l) == 1:
        guides_l = guides_l * len(concepts_l)
    elif len(guides_l) != len(concepts_l):
        raise GuardInputError(f"give one guide for all concepts or one per concept: {len(guides_l)} guides "
                              f"for {len(concepts_l)} concepts")
    preserve_l = _str_list(preserve, "preserve")
    unet = _unet_of(pipe)
    from guard.erase.uce import pipeline_encoders, resolve_hidden_state

    encoders = pipeline_encoders(pipe)
    hs = resolve_hidden_state(pipe, hidden_state)
    if method in ("uce", "rece"):
        _number(lamb, "lamb", lo=0, lo_open=True)
        _number(erase_scale, "erase_scale", lo=0, lo_open=True)
        if preserve_scale is not None:
            _number(preserve_scale, "preserve_scale", lo=0)
        if method == "rece":
            _number(epochs, "epochs", lo=1, integer=True)
            _number(embedding_lamb, "embedding_lamb", lo=0, lo_open=True)
    else:
        _number(iterations, "iterations", lo=1, integer=True)
        _number(lr, "lr", lo=0, lo_open=True)
        _number(eta, "eta")
        _number(seed, "seed", integer=True)
        _number(ddim_steps, "ddim_steps", lo=2, integer=True)
        _number(start_guidance, "start_guidance")
        _number(checkpoint_every, "checkpoint_every", lo=1, integer=True)
        if latent_size is not None:
            _number(latent_size, "latent_size", lo=1, integer=True)
        if getattr(unet.config, "addition_embed_type", None):
            raise GuardError("ESD is implemented for SD 1.x/2.x UNets; this UNet needs added conditioning "
                             f"({unet.config.addition_embed_type!r}, e.g. SDXL); use uce or rece")
        if preserve_l:
            raise GuardInputError("ESD has no preservation term; --preserve applies to uce and rece")
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise GuardInputError(f"out must be a path, got {type(out).__name__}")

    # ---- compute
    originals = _ParamView(unet)  # the pipeline is not modified while erasing: these are the originals
    meta: dict[str, Any] = {
        "concepts": concepts_l, "guides": guides_l, "preserved": preserve_l,
        "model": model_id or _model_id(pipe), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if method in ("uce", "rece"):
        if method == "uce":
            from guard.erase.uce import uce_edit

            fe, hyper = uce_edit(unet, encoders, concepts_l, guides_l, preserve_l, lamb=lamb,
                                 erase_scale=erase_scale, preserve_scale=preserve_scale,
                                 with_to_k=with_to_k, hidden_state=hs)
        else:
            from guard.erase.rece import rece_edit

            fe, hyper = rece_edit(unet, encoders, concepts_l, guides_l, preserve_l, epochs=epochs, lamb=lamb,
                                  erase_scale=erase_scale, preserve_scale=preserve_scale,
                                  embedding_lamb=embedding_lamb, with_to_k=with_to_k, hidden_state=hs,
                                  progress=progress)
        meta["hyperparameters"] = hyper
        meta["elapsed_s"] = round(time.perf_counter() - t0, 4)
        e = _build(method, originals, factor=fe, meta=meta)
    else:
        from guard.erase.esd import EsdConfig, esd_train
        from guard.erase.uce import encode

        if len(concepts_l) > 1:
            # ESD trains one prompt; several concepts are erased as one comma-joined prompt (as the paper's
            # code does for lists of concepts)
            prompt = ", ".join(concepts_l)
        else:
            prompt = concepts_l[0]
        emb, _ = encode(encoders, [prompt, ""], hs)
        cfg = EsdConfig(method=method, iterations=iterations, lr=lr, eta=eta, seed=seed, ddim_steps=ddim_steps,
                        start_guidance=start_guidance, latent_size=latent_size,
                        checkpoint=os.fspath(checkpoint) if checkpoint is not None else None,
                        checkpoint_every=checkpoint_every)
        dt = next(unet.parameters()).dtype
        changed, info = esd_train(unet, emb[:1].to(dt), emb[1:].to(dt), dict(pipe.scheduler.config), cfg,
                                  concepts=concepts_l, progress=progress)
        meta["hyperparameters"] = {"iterations": iterations, "lr": lr, "eta": eta, "seed": seed,
                                   "ddim_steps": ddim_steps, "start_guidance": start_guidance,
                                   "latent_size": latent_size or int(unet.config.sample_size),
                                   "prompt": prompt, "hidden_state": hs, "trainable": info["trainable"],
                                   "resumed_from": info["resumed_from"],
                                   "final_losses": [round(x, 6) for x in info["losses"][-10:]]}
        meta["elapsed_s"] = round(time.perf_counter() - t0, 4)
        if not changed:
            raise GuardError(f"{method}: training changed no parameter (learning rate {lr} too small?)")
        e = _build(method, originals, full_new=changed, meta=meta)
    if out is not None:
        e.save(out)
    if apply:
        apply_erasure(pipe, e)
    return e


class _ParamView(dict):
    """``{name: CPU value}`` of a module's parameters, read on demand (no copy of the whole UNet)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self._params = dict(module.named_parameters())

    def __missing__(self, name: str) -> torch.Tensor:
        v = self._params[name].detach().cpu()
        self[name] = v
        return v


def _model_id(pipe: Any) -> Optional[str]:
    cfg = getattr(pipe, "config", None)
    try:
        v = cfg.get("_name_or_path") if cfg is not None else None
    except Exception:
        v = None
    return str(v) if v else None


# ------------------------------------------------------------------------------------ apply / revert


def erasure_stack(pipe: Any) -> list[dict[str, Any]]:
    """The erasures applied to ``pipe``'s UNet, oldest first (the list itself: do not edit)."""
    unet = _unet_of(pipe)
    stack = getattr(unet, STACK_ATTR, None)
    if stack is None:
        stack = []
        setattr(unet, STACK_ATTR, stack)
    return stack


def _pristine(stack: list[dict[str, Any]], name: str, current: torch.Tensor) -> torch.Tensor:
    for entry in stack:
        if name in entry["originals"]:
            return entry["originals"][name]
    return current


def _plan(unet: nn.Module, e: Erasure, strength: float) -> tuple[dict[str, torch.Tensor], str]:
    """New values for every parameter ``e`` edits, or a GuardError; nothing is changed here."""
    src = e.path or "<in-memory erasure>"
    params = dict(unet.named_parameters())
    missing = [n for n in e.params if n not in params]
    if missing:
        raise GuardError(f"erasure {src} edits parameters this UNet does not have (e.g. {missing[0]!r}); "
                         "it was made for another architecture")
    shapes = e.metadata.get("shapes", {})
    for n in e.params:
        if list(params[n].shape) != list(shapes.get(n, params[n].shape)):
            raise GuardError(f"erasure {src}: {n} has shape {list(params[n].shape)} here but "
                             f"{shapes[n]} in the artifact; it was made for another model")
    current = {n: params[n].detach().cpu() for n in e.params}
    stack = getattr(unet, STACK_ATTR, None) or []
    want = {e.metadata["base_fingerprint"], e.metadata.get("base_fingerprint_float16"),
            e.metadata.get("base_fingerprint_bfloat16")} - {None}
    have_all = _current_fingerprints(current)
    have = fingerprint(current)
    if have_all & want:
        mode, base = "chained", current
    else:
        pristine = {n: _pristine(stack, n, current[n]) for n in e.params}
        have_p = _current_fingerprints(pristine) if stack else have_all
        if stack and have_p & want:
            mode, base = "independent", pristine
        else:
            raise GuardError(
                f"erasure {src} does not fit this model: it was made for base fingerprint "
                f"{e.metadata['base_fingerprint']} but the UNet's {len(e.params)} edited tensor(s) have "
                f"fingerprint {have}" + (f" (before guard's erasures: {fingerprint(pristine)})" if stack else "")
                + "; it was made for a different base model (or other erasures must be applied first)"
            )
    new: dict[str, torch.Tensor] = {}
    for n in e.params:
        cur = current[n]
        if n in e.full:
            if mode == "chained" and strength == 1.0:
                new[n] = e.full[n].to(cur.dtype)
                continue
            delta = e.full[n].to(torch.float64) - base[n].to(torch.float64)
        else:
            delta = e.up[n].to(torch.float64) @ e.down[e.lowrank[n]].to(torch.float64)
        new[n] = (cur.to(torch.float64) + strength * delta).to(cur.dtype)
        if not torch.isfinite(new[n]).all():
            raise GuardError(f"erasure {src}: applying it gives non-finite values in {n}")
    return new, mode


def apply_erasure(pipe: Any, path: str | os.PathLike | Erasure, strength: float = 1.0,
                  *, source: str = "user") -> dict[str, Any]:
    """Apply an erasure artifact (path or :class:`Erasure`) to ``pipe``'s UNet at ``strength`` in [0, 1].

    Everything is checked (file, architecture, fingerprint, strength) before any weight changes.
    Returns the stack entry's summary (path, method, concepts, strength, mode).
    """
    unet = _unet_of(pipe)
    _number(strength, "strength", lo=0.0, hi=1.0)
    strength = float(strength)
    e = path if isinstance(path, Erasure) else Erasure.load(path)
    new, mode = _plan(unet, e, strength)
    params = dict(unet.named_parameters())
    saved = {n: params[n].detach().cpu().clone() for n in new}
    try:
        with torch.no_grad():
            for n, v in new.items():
                params[n].copy_(v.to(params[n].device))
    except BaseException:
        with torch.no_grad():
            for n, v in saved.items():
                params[n].copy_(v.to(params[n].device))
        raise
    entry = {"path": e.path, "method": e.method, "concepts": list(e.metadata["concepts"]),
             "strength": strength, "mode": mode, "fingerprint": e.base_fingerprint, "source": source,
             "originals": saved}
    erasure_stack(pipe).append(entry)
    return _public(entry)


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "originals"}


def revert_erasure(pipe: Any) -> dict[str, Any]:
    """Undo the most recently applied erasure: its parameters get back their exact previous values."""
    unet = _unet_of(pipe)
    stack = erasure_stack(pipe)
    if not stack:
        raise GuardError("no erasure is applied to this pipeline; nothing to revert")
    entry = stack[-1]
    params = dict(unet.named_parameters())
    with torch.no_grad():
        for n, v in entry["originals"].items():
            params[n].copy_(v.to(params[n].device))
    stack.pop()
    return _public(entry)


def applied_erasures(pipe: Any) -> list[dict[str, Any]]:
    """Summaries of the applied erasures, oldest first (for reports and audit lines)."""
    try:
        unet = _unet_of(pipe)
    except GuardInputError:
        return []
    return [_public(e) for e in (getattr(unet, STACK_ATTR, None) or [])]


def sync_erasures(pipe: Any, erasers: Iterable[Any], *, source: str = "policy") -> list[dict[str, Any]]:
    """Make the erasures ``source`` applied to ``pipe`` exactly ``erasers`` (items with ``path`` and
    ``strength``, or ``(path, strength)`` tuples), in order. Already-applied ones are kept; otherwise
    the ones this source applied are reverted and the list applied anew. On any error the pipeline is
    left as it was. Returns the summaries of the applied list."""
    want = []
    for item in erasers:
        if isinstance(item, (tuple, list)):
            p, s = item
        elif isinstance(item, dict):
            p, s = item["path"], item.get("strength", 1.0)
        else:
            p, s = item.path, item.strength
        want.append((os.path.abspath(os.fspath(p)), float(s)))
    stack = erasure_stack(pipe)
    mine = [i for i, en in enumerate(stack) if en["source"] == source]
    have = [(os.path.abspath(stack[i]["path"]) if stack[i]["path"] else None, stack[i]["strength"]) for i in mine]
    if have == want:
        return [_public(stack[i]) for i in mine]
    if mine and mine[0] != len(stack) - len(mine):
        raise GuardError("erasures applied by hand sit on top of the policy's; revert them "
                         "(guard.revert_erasure) before changing the policy's erasers")
    loaded = [Erasure.load(p) for p, _ in want]  # fail on a bad file before touching anything
    undone = [revert_erasure(pipe) for _ in mine][::-1]
    applied = 0
    try:
        for e, (_, s) in zip(loaded, want):
            apply_erasure(pipe, e, s, source=source)
            applied += 1
    except BaseException:
        for _ in range(applied):
            revert_erasure(pipe)
        for en in undone:  # restore what was there
            apply_erasure(pipe, Erasure.load(en["path"]), en["strength"], source=source)
        raise
    return [_public(en) for en in erasure_stack(pipe) if en["source"] == source]
