"""``GuardComponent``: the policy as a diffusers pipeline component.

Registered like the UNet or the VAE, it travels with ``.to()``, ``from_pipe`` and
``save_pretrained``/``from_pretrained``: the resolved policy is stored in ``guard/config.json``
(and, for people to read, ``guard/policy.yaml``) inside the saved pipeline.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from guard.core import Guard
from guard.policy import PolicySource, load_policy, policy_to_yaml


class GuardComponent(ModelMixin, ConfigMixin):
    """Holds a resolved policy (``config.policy``) and the :class:`guard.core.Guard` built from it."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, policy: dict | None = None):
        super().__init__()
        # one tiny persistent buffer: diffusers' loaders expect a weights file for every model
        self.register_buffer("format_version", torch.ones(1), persistent=True)
        self.guard = Guard(policy if policy is not None else "default")

    @classmethod
    def from_policy(cls, policy: PolicySource = "default") -> GuardComponent:
        p = load_policy(policy)
        # paths stay as written (the sha256 covers them); base_dir records where they are relative to
        d = p.model_dump(mode="json", exclude={"extends", "include", "amend"})
        d["base_dir"] = os.fspath(p.base_path.absolute())
        return cls(policy=d)

    @property
    def policy(self):
        return self.guard.policy

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        super().save_pretrained(save_directory, *args, **kwargs)
        with open(os.path.join(save_directory, "policy.yaml"), "w", encoding="utf-8") as f:
            f.write(policy_to_yaml(self.guard.policy))

    def extra_repr(self) -> str:
        return f"policy={self.guard.policy.name!r}, sha256={self.guard.policy_sha256[:12]}"
