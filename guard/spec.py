"""Per-deployment pipeline specs (``pipelines/*.yaml``): which model, pipeline kind, policy, device.

    name: sd15-prod
    model: /models/stable-diffusion-v1-5     # hub id or local path; 'builtin:tiny' is the demo model
    pipeline: text2img
    policy: default                           # a built-in name, or a file relative to this spec
    device: cuda                              # cpu | cuda | cuda:1 | mps | auto
    dtype: float16                            # float32 | float16 | bfloat16
    enable_model_cpu_offload: false
    defaults: {num_inference_steps: 30, guidance_scale: 7.5}

A relative policy path is resolved against the spec's folder, never the current directory, so a spec
means the same wherever the command runs; the built-in specs name built-in policies, which an installed
wheel ships.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from guard.errors import GuardError, PolicyError
from guard.paths import builtin_pipeline_dir
from guard.policy.loader import _display, _validate, read_yaml

logger = logging.getLogger(__name__)

BUILTIN_TINY = "builtin:tiny"
SPEC_SUFFIXES = (".yaml", ".yml")


class CallDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_inference_steps: int = Field(default=30, ge=1, le=1000, strict=True)
    guidance_scale: float = Field(default=7.5, ge=0.0, le=50.0, allow_inf_nan=False)
    height: int | None = Field(default=None, ge=8, le=4096, strict=True)
    width: int | None = Field(default=None, ge=8, le=4096, strict=True)
    negative_prompt: str | None = None
    seed: int | None = Field(default=None, ge=0, le=2**64 - 1, strict=True)


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    model: str = Field(description="hub id, local path, or 'builtin:tiny'")
    pipeline: Literal["text2img"] = "text2img"
    policy: str | None = Field(
        default="default",
        description="built-in name or a file relative to the spec; null keeps the policy saved with the model",
    )
    device: str = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    enable_model_cpu_offload: bool = False
    defaults: CallDefaults = Field(default_factory=CallDefaults)

    _base_dir: Path | None = None

    def policy_ref(self) -> str | None:
        """The policy to load: a path (absolute, or resolved against the spec file's folder, never the
        current directory) or a built-in name. A bare name is a file beside the spec when one exists,
        else a built-in. None when the spec keeps the model's saved policy."""
        if self.policy is None:
            return None
        ref = os.path.expanduser(self.policy)
        p = Path(ref)
        base = self._base_dir
        if p.is_absolute():
            return str(p)
        if base is not None and (base / p).is_file():
            return str((base / p).resolve())
        if "/" in ref or os.sep in ref:
            where = base / p if base is not None else p
            raise GuardError(
                f"pipeline spec {self.name!r}: policy file not found: {self.policy!r} (looked for {where})"
            )
        return ref  # a built-in name: load_policy lists the built-ins when it is not one


def load_spec(ref: str | os.PathLike) -> PipelineSpec:
    """Load a pipeline spec file, or a built-in one by name (``demo``, ``sd15``)."""
    raw = os.fspath(ref)
    if not raw.strip():
        raise GuardError("pipeline spec is empty; give a spec file or a built-in name")
    p = Path(os.path.expanduser(raw))
    if p.is_dir():
        raise GuardError(f"pipeline spec {raw!r} is a directory; give a .yaml file")
    if p.exists() and not p.is_file():  # a FIFO or a device: reading it could block
        raise GuardError(f"pipeline spec {raw!r} is not a regular file; give a .yaml file")
    if not p.is_file():
        name = p.name[: -len(p.suffix)] if p.suffix in SPEC_SUFFIXES else p.name
        b = builtin_pipeline_dir() / f"{name}.yaml"
        if "/" in raw or os.sep in raw or not b.is_file():
            names = ", ".join(sorted(q.stem for q in builtin_pipeline_dir().glob("*.yaml")))
            raise GuardError(f"pipeline spec not found: {raw!r}; built-in specs: {names}")
        p = b
    data = read_yaml(p)
    if not isinstance(data, dict):
        raise PolicyError(f"{_display(p)}:1:1: a pipeline spec must be a mapping of keys (name, model, ...)")
    spec = _validate(data, p, PipelineSpec, "pipeline spec")
    spec._base_dir = p.resolve().parent
    return spec


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def build_pipeline(spec: PipelineSpec, policy: Any = None):
    """Instantiate the guarded pipeline a spec describes. ``policy`` overrides the spec's; with neither,
    a pipeline saved by guard keeps its saved policy and any other model gets the default one."""
    import torch

    from guard.pipelines import GuardedStableDiffusionPipeline, protect

    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[spec.dtype]
    pol = policy if policy is not None else spec.policy_ref()
    device = resolve_device(spec.device)
    if spec.model == BUILTIN_TINY:
        from guard.pipelines.tiny import build_tiny_pipeline

        pipe = protect(build_tiny_pipeline(), pol if pol is not None else "default")
    else:
        try:
            pipe = GuardedStableDiffusionPipeline.from_pretrained(spec.model, policy=pol, dtype=dtype)
        except GuardError:
            raise
        except Exception as e:  # noqa: BLE001 - diffusers raises OSError, ValueError, KeyError, TypeError...
            logger.debug("loading %s", spec.model, exc_info=True)
            raise GuardError(f"cannot load model {spec.model!r}: {_first_line(e)}") from e
    try:
        if spec.enable_model_cpu_offload and device.startswith("cuda"):
            pipe.enable_model_cpu_offload()
        else:
            pipe = pipe.to(device)
    except (RuntimeError, ValueError, AssertionError) as e:  # an unknown or absent device
        raise GuardError(f"pipeline spec {spec.name!r}: cannot use device {spec.device!r}: {_first_line(e)}") from e
    return pipe
