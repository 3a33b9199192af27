"""Quiet one notice of a library under guard, at its source, without hiding anything else.

transformers (5.x) warns once per class, through its logger ``transformers.utils.import_utils``, when an
image processor class is looked up without torchvision installed: it falls back to the PIL version. diffusers
looks up ``CLIPImageProcessor`` and ``SiglipImageProcessor`` at import, so every ``import guard`` that
reaches diffusers printed two such lines. guard keeps torchvision out on purpose and the PIL processors
are what it wants, so that notice (and only it) is dropped; every other record of that logger passes.
Importing this module imports nothing heavy: a logger that transformers creates later is the same object.
"""

from __future__ import annotations

import logging

TRANSFORMERS_IMPORT_LOGGER = "transformers.utils.import_utils"
_NOTICE = "requires torchvision (not installed); falling back to"


class _TorchvisionFallbackFilter(logging.Filter):
    """Drops transformers' "falls back to the PIL image processor" notice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _NOTICE not in record.getMessage()


def quiet_torchvision_fallback_notice() -> None:
    """Attach the filter once (idempotent: a second call adds nothing)."""
    log = logging.getLogger(TRANSFORMERS_IMPORT_LOGGER)
    if not any(isinstance(f, _TorchvisionFallbackFilter) for f in log.filters):
        log.addFilter(_TorchvisionFallbackFilter())
