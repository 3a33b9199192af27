"""Policy files: schema, loading (extends/include), validation with file:line errors."""

from guard.policy.loader import (
    PolicySource,
    builtin_policies,
    builtin_policy_dir,
    load_policy,
    policy_sha256,
    policy_to_yaml,
    resolve_policy_path,
)
from guard.policy.models import (
    AuditConfig,
    Concept,
    NudeNetConfig,
    OutputConfig,
    Policy,
    ScreenConfig,
)

__all__ = [
    "PolicySource",
    "AuditConfig",
    "Concept",
    "NudeNetConfig",
    "OutputConfig",
    "Policy",
    "ScreenConfig",
    "builtin_policies",
    "builtin_policy_dir",
    "load_policy",
    "policy_sha256",
    "policy_to_yaml",
    "resolve_policy_path",
]
