"""The eraser-method registry: a new method is one module defining an :class:`EraserMethod` plus one
line in :data:`REGISTRY`.

    class MyEraser(EraserMethod):
        name = "mine"
        params = {"strength": Param(1.0, "how hard", lo=0, lo_open=True)}
        def run(self, job: EraseJob) -> MethodResult: ...   # never modifies job.unet
    MINE = MyEraser()
    # REGISTRY["mine"] = "guard.erase.mine:MINE"

``guard.erase(pipe, concepts, method="mine", strength=2.0)`` then checks the hyperparameters against
``params`` (unknown names get a did-you-mean), calls ``run``, and stores the result as a fingerprinted
artifact; ``guard erase --method mine`` lists the method too. Modules load only when used.
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from guard.erase.params import Param
from guard.errors import GuardError, GuardInputError

__all__ = ["METHODS", "REGISTRY", "EraseJob", "EraserMethod", "MethodResult", "get_method"]

#: method name -> "module:object" of its :class:`EraserMethod`
REGISTRY: dict[str, str] = {
    "uce": "guard.erase.uce:UCE",
    "rece": "guard.erase.rece:RECE",
    "esd-x": "guard.erase.esd:ESD_X",
    "esd-u": "guard.erase.esd:ESD_U",
}
#: the built-in methods (``REGISTRY`` may hold more)
METHODS = tuple(REGISTRY)


@dataclass
class EraseJob:
    """What a method gets: the pipeline, its UNet (not to be modified), the text encoders, and the
    checked inputs (``params``: every hyperparameter of the method, defaults filled in)."""

    pipe: Any
    unet: Any
    encoders: list
    concepts: list[str]
    guides: list[str]
    preserve: list[str]
    hidden_state: str
    params: dict[str, Any]
    progress: bool = False


@dataclass
class MethodResult:
    """A method's edit: either ``factor`` (a :class:`guard.erase.uce.FactorEdit`, stored low rank where
    smaller) or ``full`` (``{parameter name: new value}``), and the hyperparameters to record."""

    hyperparameters: dict[str, Any]
    factor: Any = None
    full: dict | None = None
    info: dict[str, Any] = field(default_factory=dict)


class EraserMethod(abc.ABC):
    """Base class of eraser methods (see the module docstring)."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}
    #: whether the method has a preservation term (``preserve=[...]``)
    preserves: ClassVar[bool] = True
    #: whether it works on UNets with added conditioning (SDXL's text_time)
    added_conditioning: ClassVar[bool] = True

    def check(self, job: EraseJob) -> None:
        """Refuse inputs this method cannot use (called before anything is computed)."""
        if job.preserve and not self.preserves:
            raise GuardInputError(
                f"{self.name} has no preservation term; preserve applies to "
                f"{', '.join(m for m in REGISTRY if get_method(m).preserves)}"
            )
        kind = getattr(job.unet.config, "addition_embed_type", None)
        if kind and not self.added_conditioning:
            raise GuardError(
                f"{self.name} is implemented for SD 1.x/2.x UNets; this UNet needs added conditioning "
                f"({kind!r}, e.g. SDXL); use "
                f"{' or '.join(m for m in REGISTRY if get_method(m).added_conditioning)}"
            )

    @abc.abstractmethod
    def run(self, job: EraseJob) -> MethodResult:
        """The edit for ``job`` (``job.unet`` must not be modified)."""


def get_method(name: Any) -> EraserMethod:
    """The registered method called ``name`` (case-insensitive)."""
    if not isinstance(name, str) or name.lower() not in REGISTRY:
        raise GuardInputError(f"unknown erasure method {name!r}; choose one of {', '.join(REGISTRY)}")
    module, _, attr = REGISTRY[name.lower()].partition(":")
    return getattr(importlib.import_module(module), attr)
