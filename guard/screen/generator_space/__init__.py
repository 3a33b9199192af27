"""Generator-space screen: a second prompt screen in the pipeline's own text-encoder space.

The sentence-model screen (:mod:`guard.screen.screen`) reads prompts the way people do. Adversarial
prompts optimised against CLIP (token soup that reads as gibberish to a sentence model) and
textual-inversion tokens (``<x>``, a word no sentence model knows) still have to land near the concept
in the space the *generator* conditions on. This screen embeds the prompt with the pipeline's own text
encoder(s), exactly as diffusers tokenises it, and compares it with the policy's concept phrases
embedded by the same encoder(s).

Cosine scales differ a lot between encoders, so thresholds are calibrated per model: ``guard
calibrate --model M --benign CSV`` takes a high quantile of benign prompts' scores per concept and
stores it beside the policy; the policy names the file in ``screen.generator_space.calibration``.

    gs = get_generator_space_screen(pipe, policy)        # cached on the pipeline; loads the calibration
    results = gs.screen_batch(["a photo of ...", ...])   # GeneratorSpaceResult per prompt
    needs_generator_space(pipe)                           # True once textual-inversion tokens are loaded

One job per module: :mod:`.screen` (scoring and verdicts), :mod:`.added_tokens` (loaded tokens),
:mod:`.fingerprint` (encoder identity), :mod:`.calibration_io` (calibration files and their scope),
:mod:`.calibrate` (computing a calibration).
"""

from __future__ import annotations

from guard.screen.generator_space.added_tokens import ALIAS_COSINE, AddedToken, needs_generator_space
from guard.screen.generator_space.calibrate import calibrate
from guard.screen.generator_space.calibration_io import (
    CALIBRATION_FORMAT,
    CALIBRATION_VERSION,
    calibration_scope,
    default_calibration_path,
    is_builtin_policy,
    load_calibration,
    resolve_calibration_path,
    save_calibration,
)
from guard.screen.generator_space.fingerprint import encoders_fingerprint, model_fingerprint
from guard.screen.generator_space.screen import GeneratorSpaceResult, GeneratorSpaceScreen, get_generator_space_screen
from guard.textenc import pipeline_encoders  # the encoders a screen is built from (defined in guard.textenc)

__all__ = [
    "ALIAS_COSINE",
    "CALIBRATION_FORMAT",
    "CALIBRATION_VERSION",
    "AddedToken",
    "GeneratorSpaceResult",
    "GeneratorSpaceScreen",
    "calibrate",
    "calibration_scope",
    "default_calibration_path",
    "encoders_fingerprint",
    "get_generator_space_screen",
    "is_builtin_policy",
    "load_calibration",
    "model_fingerprint",
    "needs_generator_space",
    "pipeline_encoders",
    "resolve_calibration_path",
    "save_calibration",
]
