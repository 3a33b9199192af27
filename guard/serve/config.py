"""The ``guard serve`` configuration: deployments, tenants and their keys, limits, reload, audit.

    version: 1
    audit: {path: /var/log/guard/serve-audit.jsonl}   # every deployment's image lines go here
    admin_keys: [sha256:...]                            # may call POST /admin/reload
    limits: {max_body_bytes: 8388608, max_prompt_chars: 2000, max_n: 4, max_pixels: 1048576}
    reload: {poll_seconds: 2.0}
    deployments:
      - name: sd15
        pipeline: ../pipelines/sd15.yaml   # a pipeline spec (model, kind, policy, device, dtype)
        pool: 2                            # worker pipelines (from_pipe copies sharing the weights)
        queue: 8                           # waiting requests beyond the busy workers; more -> 429
      - name: moderation
        screen_only: true
        policy: strict
    tenants:
      - name: acme
        keys: [sha256:...]                 # `guard serve hash-key` prints these
        deployments: [sd15, moderation]    # or ["*"]
        policies: {moderation: ../policies/acme.yaml}

Relative paths are taken from the config file's directory. Without a config, :func:`default_config`
serves the embedded demo pipeline (text2img, img2img and inpaint on the same tiny weights) and a
screen-only deployment for the default policy, with authentication off.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from guard.errors import PolicyError

_KEY_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def hash_key(key: str) -> str:
    """The form a key is stored in: ``sha256:<hex>`` of its UTF-8 bytes."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _check_hashes(v: list[str]) -> list[str]:
    for i, h in enumerate(v):
        if not _KEY_HASH.match(h):
            raise ValueError(
                f"entry {i} is not 'sha256:' followed by 64 lowercase hex digits "
                "(store the hash `guard serve hash-key` prints, never the key itself)"
            )
    return v


class Limits(_Strict):
    """Request limits; a request over one gets 413 (body) or 422 naming the field."""

    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description="request body size (413 above)")
    max_prompt_chars: int = Field(default=2000, ge=1, description="characters per prompt")
    max_prompts: int = Field(default=64, ge=1, description="prompts per /v1/screen request")
    max_n: int = Field(default=4, ge=1, le=64, description="images per generation request")
    max_side: int = Field(default=1024, ge=8, description="width or height in pixels")
    max_pixels: int = Field(default=1024 * 1024, ge=64, description="width x height of a generated image")
    max_input_pixels: int = Field(default=4096 * 4096, ge=64, description="width x height of an uploaded image")


class ReloadConfig(_Strict):
    poll_seconds: float = Field(default=2.0, ge=0.0, description="policy-file mtime polling; 0 = off")


class ScreenBatching(_Strict):
    """Micro-batching of /v1/screen: concurrent requests share one encoder pass."""

    max_wait_ms: float = Field(default=5.0, ge=0.0, le=100.0, description="longest wait for company")
    max_batch: int = Field(default=128, ge=1, le=4096, description="prompts per encoder pass")
    max_pending: int = Field(default=4096, ge=1, description="waiting prompts per policy; more -> 429")
    timeout_s: float = Field(default=30.0, gt=0.0, description="a screen request waiting longer gets 504")
    fast_path: bool = Field(
        default=True, description="answer POST /v1/screen straight from ASGI (false: through the FastAPI route)"
    )


class AuditSettings(_Strict):
    path: str | None = Field(default=None, description="server-wide audit log; none = each policy's own")
    store_prompts: bool = False


class CallOverrides(_Strict):
    """Per-deployment generation settings (override the pipeline spec's defaults)."""

    num_inference_steps: int | None = Field(default=None, ge=1, le=1000)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=50.0)
    strength: float | None = Field(default=None, gt=0.0, le=1.0, description="img2img / inpaint strength")


class DeploymentConfig(_Strict):
    name: str
    description: str = ""
    pipeline: str | None = Field(default=None, description="pipeline spec file or built-in spec name")
    screen_only: bool = False
    kind: Literal["text2img", "img2img", "inpaint"] | None = Field(
        default=None, description="pipeline class built on the spec's weights (default: the spec's kind)"
    )
    policy: str | None = Field(default=None, description="overrides the spec's policy")
    pool: int = Field(default=1, ge=1, le=64)
    queue: int = Field(default=8, ge=0, le=100_000, description="requests waiting beyond the busy workers")
    timeout_s: float = Field(default=120.0, gt=0.0, description="a request waiting longer gets 504")
    on_block: Literal["error", "blank"] = Field(
        default="error", description="error: HTTP 400 content_policy_violation; blank: a black image"
    )
    defaults: CallOverrides = Field(default_factory=CallOverrides)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> DeploymentConfig:
        if self.screen_only and self.pipeline is not None:
            raise ValueError("a screen_only deployment has no `pipeline`")
        if not self.screen_only and self.pipeline is None:
            raise ValueError("give `pipeline` (a pipeline spec) or `screen_only: true`")
        if self.screen_only and self.kind is not None:
            raise ValueError("a screen_only deployment has no `kind`")
        return self


class TenantConfig(_Strict):
    name: str
    keys: list[str] = Field(description="sha256 of each accepted key ('sha256:<hex>')")
    deployments: list[str] = Field(default_factory=lambda: ["*"], description="allowed deployments, or ['*']")
    policies: dict[str, str] = Field(default_factory=dict, description="deployment -> this tenant's policy")

    @field_validator("keys")
    @classmethod
    def _keys(cls, v: list[str]) -> list[str]:
        return _check_hashes(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return v


class ServeConfig(_Strict):
    version: Literal[1] = 1
    deployments: list[DeploymentConfig] = Field(min_length=1)
    tenants: list[TenantConfig] = Field(default_factory=list, description="none = authentication off")
    admin_keys: list[str] = Field(default_factory=list, description="sha256 of keys allowed to POST /admin/reload")
    limits: Limits = Field(default_factory=Limits)
    reload: ReloadConfig = Field(default_factory=ReloadConfig)
    screen: ScreenBatching = Field(default_factory=ScreenBatching)
    audit: AuditSettings = Field(default_factory=AuditSettings)

    _base_dir: Path | None = None
    _source: str | None = None

    @field_validator("admin_keys")
    @classmethod
    def _admin_keys(cls, v: list[str]) -> list[str]:
        return _check_hashes(v)

    @model_validator(mode="after")
    def _cross(self) -> ServeConfig:
        names = [d.name for d in self.deployments]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"deployment names must be unique; repeated: {', '.join(dup)}")
        seen_keys: dict[str, str] = {}
        for t in self.tenants:
            for d in list(t.deployments) + list(t.policies):
                if d != "*" and d not in names:
                    raise ValueError(
                        f"tenant {t.name!r} names deployment {d!r}, which is not defined "
                        f"(deployments: {', '.join(names)})"
                    )
            for k in t.keys:
                if k in seen_keys and seen_keys[k] != t.name:
                    raise ValueError(f"tenants {seen_keys[k]!r} and {t.name!r} share a key")
                seen_keys[k] = t.name
        tnames = [t.name for t in self.tenants]
        if len(set(tnames)) != len(tnames):
            raise ValueError("tenant names must be unique")
        return self

    @property
    def auth_enabled(self) -> bool:
        return bool(self.tenants)

    def resolve(self, ref: str) -> str:
        """A path from the config resolved against its directory (built-in names pass through)."""
        p = Path(os.path.expanduser(ref))
        if not p.is_absolute() and self._base_dir is not None and (self._base_dir / p).exists():
            return str((self._base_dir / p).resolve())
        return ref

    def resolve_output(self, ref: str) -> str:
        """A path the server writes (the audit log), taken from the config's directory when relative."""
        p = Path(os.path.expandvars(os.path.expanduser(ref)))
        if not p.is_absolute() and self._base_dir is not None:
            p = self._base_dir / p
        return str(p)

    def deployment(self, name: str) -> DeploymentConfig:
        for d in self.deployments:
            if d.name == name:
                return d
        raise KeyError(name)


def load_config(path: str | os.PathLike) -> ServeConfig:
    """Read and validate a serve config; errors name file:line and the key path."""
    from guard.policy.loader import _display, _validate, read_yaml

    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.is_file():
        raise PolicyError(f"serve config not found: {os.fspath(path)!r}")
    data = read_yaml(p)
    if not isinstance(data, dict):
        raise PolicyError(f"{_display(p)}:1:1: a serve config must be a mapping of keys (deployments, tenants, ...)")
    cfg = _validate(data, p, ServeConfig, "serve config")
    cfg._base_dir = p.resolve().parent
    cfg._source = str(p.resolve())
    return cfg


def config_from_dict(data: dict, base_dir: str | os.PathLike | None = None) -> ServeConfig:
    from guard.policy.loader import _validate

    cfg = _validate(data, None, ServeConfig, "serve config")
    cfg._base_dir = Path(base_dir).resolve() if base_dir is not None else None
    return cfg


def default_config() -> ServeConfig:
    """What ``guard serve`` runs without ``--config``: the demo pipeline and a default-policy screen."""
    return config_from_dict(
        {
            "version": 1,
            "deployments": [
                {
                    "name": "demo",
                    "pipeline": "demo",
                    "description": "embedded tiny random-weight pipeline (noise images)",
                },
                {
                    "name": "demo-img2img",
                    "pipeline": "demo",
                    "kind": "img2img",
                    "description": "img2img on the demo weights",
                },
                {
                    "name": "demo-inpaint",
                    "pipeline": "demo",
                    "kind": "inpaint",
                    "description": "inpainting on the demo weights",
                },
                {
                    "name": "screen",
                    "screen_only": True,
                    "policy": "default",
                    "description": "prompt screen under the default policy",
                },
            ],
        }
    )
