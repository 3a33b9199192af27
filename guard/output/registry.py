"""Which image classifiers a policy may name, by ``type``.

A classifier is one module plus one entry in :data:`BUILTIN`. The module defines

* ``Config``: a :class:`guard.output.config.ClassifierConfig` subclass with ``type: Literal[...]``,
  its model settings and its labels (policy validation imports only this, so the module must not
  import onnxruntime, torch or load a model at import time);
* ``Classifier``: an :class:`guard.output.base.ImageClassifier` with a ``from_config(cfg)``
  classmethod that loads the model.

Code outside guard adds its own with :func:`register` (before loading a policy that names it)::

    from guard.output.registry import register
    register("my_detector", MyConfig, MyClassifier)
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

#: type -> module defining ``Config`` and ``Classifier``
BUILTIN: dict[str, str] = {
    "nudenet": "guard.output.nudenet",
    "open_nsfw": "guard.output.open_nsfw",
    "image_safety": "guard.output.image_safety",
    "safety_checker": "guard.output.safety_checker",
    "clip_zero_shot": "guard.output.clip_zero_shot",
}

_EXTRA: dict[str, tuple[type, type]] = {}
_LOCK = threading.Lock()


def register(type_name: str, config_cls: type, classifier_cls: type) -> None:
    """Make ``type: <type_name>`` valid in policies. ``config_cls`` must subclass
    :class:`~guard.output.config.ClassifierConfig`; ``classifier_cls`` needs ``from_config(cfg)``."""
    from guard.output.config import ClassifierConfig

    if not isinstance(type_name, str) or not type_name.strip():
        raise ValueError(f"classifier type must be a non-empty string, got {type_name!r}")
    if not (isinstance(config_cls, type) and issubclass(config_cls, ClassifierConfig)):
        raise TypeError(f"{type_name}: config class must subclass ClassifierConfig, got {config_cls!r}")
    if not callable(getattr(classifier_cls, "from_config", None)):
        raise TypeError(f"{type_name}: classifier class {classifier_cls!r} has no from_config(cfg)")
    if type_name in BUILTIN:
        raise ValueError(f"classifier type {type_name!r} is built in and cannot be replaced")
    with _LOCK:
        _EXTRA[type_name] = (config_cls, classifier_cls)


def names() -> list[str]:
    """Every registered type, built-in first."""
    return list(BUILTIN) + [n for n in _EXTRA if n not in BUILTIN]


def _module(type_name: str) -> Any:
    return importlib.import_module(BUILTIN[type_name])


def config_model(type_name: str) -> type:
    """The pydantic settings model of ``type_name``; KeyError when it is not registered."""
    if type_name in _EXTRA:
        return _EXTRA[type_name][0]
    if type_name not in BUILTIN:
        raise KeyError(type_name)
    return _module(type_name).Config


def classifier_class(type_name: str) -> type:
    if type_name in _EXTRA:
        return _EXTRA[type_name][1]
    if type_name not in BUILTIN:
        raise KeyError(type_name)
    return _module(type_name).Classifier
