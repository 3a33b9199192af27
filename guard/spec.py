"""Per-deployment pipeline specs (``pipelines/*.yaml``): which model, pipeline kind, policy, device.

    name: sd15-prod
    model: /models/stable-diffusion-v1-5     # hub id or local path; 'builtin:tiny' is the demo model
    pipeline: text2img
    policy: ../policies/default.yaml          # relative to this file, or a built-in name
    device: cuda                              # cpu | cuda | cuda:1 | mps | auto
    dtype: float16                            # float32 | float16 | bfloat16
    enable_model_cpu_offload: false
    defaults: {num_inference_steps: 30, guidance_scale: 7.5}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from guard.errors import GuardError, PolicyError
from guard.policy.loader import _display, _validate, read_yaml

BUILTIN_TINY = "builtin:tiny"


class CallDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_inference_steps: int = Field(default=30, ge=1, le=1000)
    guidance_scale: float = Field(default=7.5, ge=0.0, le=50.0)
    height: Optional[int] = Field(default=None, ge=8, le=4096)
    width: Optional[int] = Field(default=None, ge=8, le=4096)
    negative_prompt: Optional[str] = None
    seed: Optional[int] = None


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    model: str = Field(description="hub id, local path, or 'builtin:tiny'")
    pipeline: Literal["text2img"] = "text2img"
    policy: str = "default"
    device: str = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    enable_model_cpu_offload: bool = False
    defaults: CallDefaults = Field(default_factory=CallDefaults)

    _base_dir: Optional[Path] = None

    def policy_ref(self) -> str:
        """The policy path resolved against the spec file's directory (built-in names pass through)."""
        p = Path(os.path.expanduser(self.policy))
        if not p.is_absolute() and self._base_dir is not None and (self._base_dir / p).is_file():
            return str((self._base_dir / p).resolve())
        return self.policy


def builtin_pipeline_dir() -> Path:
    here = Path(__file__).resolve().parent
    checkout = here.parent / "pipelines"
    if (checkout / "demo.yaml").is_file():
        return checkout
    return here / "_pipelines"  # installed wheel


def load_spec(ref: str | os.PathLike) -> PipelineSpec:
    """Load a pipeline spec file (or a built-in one by name, e.g. 'demo')."""
    p = Path(os.path.expanduser(os.fspath(ref)))
    if not p.is_file():
        b = builtin_pipeline_dir() / f"{p.stem if p.suffix else p.name}.yaml"
        if not os.sep in os.fspath(ref) and b.is_file():
            p = b
        else:
            raise GuardError(f"pipeline spec not found: {os.fspath(ref)!r}")
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


def build_pipeline(spec: PipelineSpec, policy: Any = None):
    """Instantiate the guarded pipeline a spec describes (``policy`` overrides the spec's)."""
    import torch

    from guard.pipelines import GuardedStableDiffusionPipeline, protect

    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[spec.dtype]
    pol = policy if policy is not None else spec.policy_ref()
    device = resolve_device(spec.device)
    if spec.model == BUILTIN_TINY:
        from guard.pipelines.tiny import build_tiny_pipeline

        pipe = protect(build_tiny_pipeline(), pol)
    else:
        try:
            pipe = GuardedStableDiffusionPipeline.from_pretrained(spec.model, policy=pol, dtype=dtype)
        except (OSError, ValueError) as e:
            raise GuardError(f"cannot load model {spec.model!r}: {e}") from e
    if spec.enable_model_cpu_offload and device.startswith("cuda"):
        pipe.enable_model_cpu_offload()
    else:
        pipe = pipe.to(device)
    return pipe
