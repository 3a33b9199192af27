"""Where guard's shipped data lives: the built-in policies and pipeline specs.

In a source checkout they are the top-level ``policies/`` and ``pipelines/`` folders. The wheel ships the
same folders inside the package as ``guard/_policies`` and ``guard/_pipelines`` (pyproject maps them), so
an installed copy never depends on a checkout, and a checkout never picks up a stale installed copy.

This module imports nothing from guard, so every other module may use it without an import cycle.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(checkout_name: str, packaged_name: str, marker: str) -> Path:
    """The packaged copy when this is an installed wheel, else the checkout's folder.

    The packaged copy is checked first: beside an installed ``guard`` in site-packages, a folder named
    ``policies`` could belong to anything, while ``guard/_policies`` can only be ours."""
    packaged = PACKAGE_DIR / packaged_name
    if (packaged / marker).is_file():
        return packaged
    checkout = PACKAGE_DIR.parent / checkout_name
    if (checkout / marker).is_file():
        return checkout
    return packaged  # neither has it: callers report the missing file with this path


def builtin_policy_dir() -> Path:
    """The folder of the built-in policies (``default``, ``strict``, ``art-styles``) and their banks."""
    return _data_dir("policies", "_policies", "default.yaml")


def builtin_pipeline_dir() -> Path:
    """The folder of the built-in pipeline specs (``demo``, ``sd15``)."""
    return _data_dir("pipelines", "_pipelines", "demo.yaml")


def cache_dir() -> Path:
    """Where guard caches derived data (``$GUARD_CACHE_DIR``, else ``$XDG_CACHE_HOME/guard``)."""
    env = os.environ.get("GUARD_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "guard"
