"""The generator-space screen: prompts scored against the policy's concepts in the generator's text space.

Each prompt is embedded with the pipeline's own text encoder(s) (pooled embedding, tokenised exactly
as diffusers does, textual-inversion expansion included; see :mod:`guard.textenc`) in up to three
views: as given, normalised (invisible characters and look-alike letters undone, when the policy
normalises), and with loaded tokens that alias a base word spelled as that word. Its best cosine to
each concept's phrases is compared with the concept's calibrated threshold.

Two modes:

* **full** (``screen.generator_space.enabled``): every prompt is scored; a match gets the configured
  ``action`` (never more than the concept's own action).
* **added tokens** (the policy did not enable it, but a tokenizer holds tokens loaded after the model,
  see :func:`~.added_tokens.needs_generator_space`): only prompts containing such tokens are scored; a
  score match at most escalates (without a calibration the threshold is
  ``screen.generator_space.threshold``, 0.9 by default).

In both modes a loaded token whose input embedding aliases a word of a concept's phrases (cosine at
least :data:`~.added_tokens.ALIAS_COSINE`) gets the concept's action.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from guard.errors import GuardError, GuardInputError
from guard.policy import PolicySource, load_policy
from guard.policy.models import Concept, Policy
from guard.screen.generator_space.added_tokens import ALIAS_COSINE, AddedTokenIndex
from guard.screen.generator_space.calibration_io import (
    check_scope,
    load_calibration,
    phrases_sha256,
    resolve_calibration_path,
    validate_calibration,
)
from guard.screen.generator_space.fingerprint import encoders_fingerprint, encoders_state
from guard.screen.normalize import normalize
from guard.screen.result import PromptVerdict
from guard.textenc import Encoder, check_encoders, encode_pooled, expand_multi_vector, pipeline_encoders

logger = logging.getLogger(__name__)

__all__ = ["HARD_MAX_PROMPT_CHARS", "GeneratorSpaceResult", "GeneratorSpaceScreen", "get_generator_space_screen"]

#: prompts longer than this many characters are refused outright (same rule as the text screen)
HARD_MAX_PROMPT_CHARS = 1_000_000
_RANK = {"allow": 0, "escalate": 1, "block": 2}


@dataclass
class GeneratorSpaceResult(PromptVerdict):
    """The generator-space verdict on one prompt (fields in :class:`guard.screen.screen.ScreenResult` order)."""

    added_tokens: list[str] = field(default_factory=list)  # loaded tokens the prompt contains
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            **self._verdict_dict(),
            "added_tokens": list(self.added_tokens),
            "elapsed_ms": round(self.elapsed_ms, 3),
        }


class GeneratorSpaceScreen:
    """Screens prompts in the generator's own text-encoder space. Thread-safe; build once per
    (encoders and their loaded tokens, policy) and reuse: the concept phrases are embedded once, on
    first use.

    ``encoders``: ``[(text_encoder, tokenizer), ...]`` (see :func:`guard.textenc.pipeline_encoders`).
    ``calibration``: a dict from :func:`~.calibrate.calibrate` / :func:`~.calibration_io.load_calibration`;
    it must have been made with these encoders (same base-vocabulary fingerprint) and the policy's prompt
    views, else :class:`GuardError`. Concepts it has no current threshold for use
    ``screen.generator_space.threshold``. ``full=False``: the added-token mode (see the module
    docstring); :func:`get_generator_space_screen` picks the mode from ``screen.generator_space.enabled``.
    """

    def __init__(
        self,
        encoders: Sequence[Encoder],
        policy: PolicySource,
        calibration: dict | None = None,
        *,
        batch_size: int = 32,
        calibration_path: str | os.PathLike | None = None,
        full: bool = True,
    ):
        self.full = bool(full)
        self.encoders = check_encoders(encoders)
        self.policy: Policy = load_policy(policy)
        self.cfg = self.policy.screen.generator_space
        self.batch_size = batch_size
        self._lock = threading.RLock()
        self.fingerprint = encoders_fingerprint(self.encoders)
        self.concepts: list[Concept] = [c for c in self.policy.concepts if c.action != "allow"]
        self._phrases: list[str] = []
        self._phrase_views: list[str] = []
        self.concept_phrase_sha: dict[str, str] = {}
        starts = [0]
        for c in self.concepts:
            views = [normalize(p).text if self.policy.screen.normalize else p for p in c.phrases]
            self._phrases.extend(c.phrases)
            self._phrase_views.extend(views)
            self.concept_phrase_sha[c.id] = phrases_sha256(views)
            starts.append(len(self._phrases))
        self._starts = np.asarray(starts, dtype=np.int64)
        self._phrase_emb_cache: np.ndarray | None = None
        self.build_ms: float | None = None  # time to embed the concept phrases, once they are
        self.added = AddedTokenIndex(self.encoders, [c.phrases for c in self.concepts])
        self.calibration: dict | None = None
        self.calibration_path = os.fspath(calibration_path) if calibration_path is not None else None
        self.uncalibrated: list[str] = []
        self.thresholds = np.full(len(self.concepts), float(self.cfg.threshold), dtype=np.float32)
        if calibration is not None:
            self._apply_calibration(calibration)

    @classmethod
    def from_pipeline(cls, pipe: Any, policy: PolicySource, **kwargs: Any) -> GeneratorSpaceScreen:
        """The screen for ``pipe``'s text encoder(s) under ``policy``, with the calibration file the
        policy names (``screen.generator_space.calibration``, relative to the policy file)."""
        pol = load_policy(policy)
        path = resolve_calibration_path(pol)
        calib = load_calibration(path) if path is not None else None
        return cls(pipeline_encoders(pipe), pol, calib, calibration_path=path, **kwargs)

    def _apply_calibration(self, calib: dict) -> None:
        where = self.calibration_path or "the calibration"
        validate_calibration(calib, where)
        fp = calib["model_fingerprint"]
        if fp != self.fingerprint:
            raise GuardError(
                f"{where} was made for text encoder fingerprint {fp}, but this pipeline's text encoder(s) "
                f"have fingerprint {self.fingerprint}; thresholds do not carry over between models: run "
                f"`guard calibrate --model <this model> --benign <prompts>` and point "
                f"screen.generator_space.calibration at the new file"
            )
        self.uncalibrated = check_scope(calib, self.policy, self.concept_phrase_sha, where)
        for ci, c in enumerate(self.concepts):
            if c.id not in self.uncalibrated:
                self.thresholds[ci] = float(calib["thresholds"][c.id])
        if self.uncalibrated:
            logger.warning(
                "%s has no current threshold for %d concept(s) (new or changed phrases: %s); "
                "they use screen.generator_space.threshold %.3f; run `guard calibrate` again",
                where,
                len(self.uncalibrated),
                ", ".join(self.uncalibrated[:5]),
                self.cfg.threshold,
            )
        self.calibration = calib

    # ---------------------------------------------------------------- scoring

    @property
    def concept_ids(self) -> list[str]:
        return [c.id for c in self.concepts]

    @property
    def _phrase_emb(self) -> np.ndarray:
        """The concept phrases' embeddings, computed on first use (in the added-token mode a pipeline
        whose prompts never hold a loaded token never pays for them)."""
        with self._lock:
            if self._phrase_emb_cache is None:
                t0 = time.perf_counter()
                self._phrase_emb_cache = self._encode(self._phrase_views, desc="embedding concept phrases")
                self.build_ms = (time.perf_counter() - t0) * 1000
            return self._phrase_emb_cache

    def _encode(self, texts: list[str], desc: str = "encoding") -> np.ndarray:
        with self._lock:
            return encode_pooled(self.encoders, texts, batch_size=self.batch_size, desc=desc)

    def check_prompts(self, prompts: Sequence[str]) -> list[str]:
        """``prompts`` as a list of strings, or :class:`GuardInputError` naming the bad one."""
        if isinstance(prompts, str):
            raise GuardInputError("expected a list of prompts, got a single string")
        if not isinstance(prompts, (list, tuple)):
            # a dict would be screened by its keys, a set in arbitrary order, bytes as integers
            raise GuardInputError(f"expected a list of prompts (strings), got {type(prompts).__name__}")
        prompts = list(prompts)
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise GuardInputError(f"prompt {i} must be a string, got {type(p).__name__}")
            if len(p) > HARD_MAX_PROMPT_CHARS:
                raise GuardInputError(
                    f"prompt {i} is {len(p)} characters long; at most {HARD_MAX_PROMPT_CHARS} are accepted"
                )
        return prompts

    def _expanded(self, raw: str) -> str:
        return expand_multi_vector([raw], self.encoders[0][1])[0]

    def views(self, prompt: str) -> list[str]:
        """The texts scored for ``prompt``: as given (what the generator sees), normalised when the policy
        normalises, and with aliasing loaded tokens spelled out. Empty prompts have no view."""
        raw = prompt[: self.policy.screen.max_prompt_chars]
        if not raw.strip():
            return []
        out = [raw]
        if self.policy.screen.normalize:
            n = normalize(raw).text
            if n and n != raw:
                out.append(n)
        if self.added:
            alias = self.added.alias_view(self._expanded(raw))
            if alias and alias not in out:
                out.append(alias)
        return out

    def _score_views(self, all_views: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """(scores, phrase index) each (n_prompts, n_concepts): best cosine of any of a prompt's views
        to any phrase of each concept, and which phrase. Prompts without views score -1."""
        n, n_c = len(all_views), len(self.concepts)
        scores = np.full((n, n_c), -1.0, dtype=np.float32)
        best_phrase = np.zeros((n, n_c), dtype=np.int64)
        flat = [v for vs in all_views for v in vs]
        if not flat or n_c == 0:
            return scores, best_phrase
        sims = self._encode(flat, desc="embedding prompts") @ self._phrase_emb.T  # (n_views, n_phrases)
        owner = np.repeat(np.arange(n), [len(vs) for vs in all_views])
        per_prompt = np.full((n, sims.shape[1]), -np.inf, dtype=np.float32)
        np.maximum.at(per_prompt, owner, sims)
        for ci in range(n_c):
            lo, hi = int(self._starts[ci]), int(self._starts[ci + 1])
            arg = per_prompt[:, lo:hi].argmax(axis=1)
            best_phrase[:, ci] = lo + arg
            scores[:, ci] = per_prompt[np.arange(n), lo + arg]
        scores[np.asarray([len(vs) == 0 for vs in all_views], dtype=bool)] = -1.0
        return np.clip(scores, -1.0, 1.0), best_phrase

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        """(n_prompts, n_concepts) best cosine of each prompt to each (non-allow) concept, in
        :attr:`concept_ids` order. Empty prompts score -1."""
        return self._score_views([self.views(p) for p in self.check_prompts(prompts)])[0]

    def screen(self, prompt: str) -> GeneratorSpaceResult:
        return self.screen_batch([prompt])[0]

    def _action_for(self, concept: Concept, cap: str) -> str:
        # never more than the concept itself asks for (an 'escalate' concept is not blocked here), nor
        # more than the mode allows
        action = "escalate" if concept.action == "escalate" else self.cfg.action
        return min(action, cap, key=_RANK.__getitem__)

    def screen_batch(self, prompts: Sequence[str]) -> list[GeneratorSpaceResult]:
        """One verdict per prompt (see the module docstring for the two modes)."""
        t0 = time.perf_counter()
        prompts = self.check_prompts(prompts)
        full = self.full
        all_views = [self.views(p) for p in prompts]
        found = [self.added.found_in(self._expanded(vs[0])) if self.added and vs else [] for vs in all_views]
        scored = [i for i, vs in enumerate(all_views) if self.concepts and vs and (full or found[i])]
        scores, phrase_idx = self._score_views([all_views[i] for i in scored])
        row = {i: k for k, i in enumerate(scored)}
        each = (time.perf_counter() - t0) * 1000 / max(1, len(prompts))
        out: list[GeneratorSpaceResult] = []
        for i in range(len(prompts)):
            base = dict(index=i, added_tokens=found[i], elapsed_ms=each)
            if not all_views[i]:
                out.append(
                    GeneratorSpaceResult(
                        decision="allow",
                        category=None,
                        concept=None,
                        phrase=None,
                        score=-1.0,
                        threshold=None,
                        reasons=["empty prompt"],
                        **base,
                    )
                )
            elif not self.concepts:
                out.append(
                    GeneratorSpaceResult(
                        decision="allow",
                        category=None,
                        concept=None,
                        phrase=None,
                        score=0.0,
                        threshold=None,
                        reasons=["policy has no concepts"],
                        **base,
                    )
                )
            elif i not in row:
                out.append(
                    GeneratorSpaceResult(
                        decision="allow",
                        category=None,
                        concept=None,
                        phrase=None,
                        score=-1.0,
                        threshold=None,
                        reasons=["generator space: not enabled by the policy and the prompt has no loaded tokens"],
                        **base,
                    )
                )
            else:
                out.append(self._verdict(scores[row[i]], phrase_idx[row[i]], found[i], full, base))
        return out

    def _verdict(
        self, scores: np.ndarray, phrase_idx: np.ndarray, tokens: list[str], full: bool, base: dict
    ) -> GeneratorSpaceResult:
        cap = "block" if full else "escalate"
        margin = scores - self.thresholds
        hits = [int(ci) for ci in np.argsort(-margin, kind="stable") if margin[ci] >= 0]
        top = hits[0] if hits else int(np.argmax(margin))
        c = self.concepts[top]
        decision, reasons = "allow", []
        fields = dict(
            category=c.category,
            concept=c.id,
            phrase=self._phrases[int(phrase_idx[top])],
            score=float(scores[top]),
            threshold=float(self.thresholds[top]),
        )
        for ci in hits[:3]:
            hc = self.concepts[ci]
            reasons.append(
                f"generator space: {hc.id} ({hc.category}): "
                f"{scores[ci]:.3f} >= {self.thresholds[ci]:.3f}"
                f"{' (uncalibrated)' if hc.id in self.uncalibrated else ''}, "
                f"nearest {self._phrases[int(phrase_idx[ci])]!r}"
            )
        if hits:
            decision = max((self._action_for(self.concepts[ci], cap) for ci in hits), key=_RANK.__getitem__)
        for ci, tok, word in self.added.concept_hits(tokens):
            hc = self.concepts[ci]
            action = "escalate" if hc.action == "escalate" else "block"
            reasons.insert(
                0,
                f"generator space: loaded token {tok.token!r} has the input embedding of {word!r} "
                f"(cosine {tok.cosine:.3f} >= {ALIAS_COSINE}), a word of {hc.id} ({hc.category})",
            )
            if _RANK[action] > _RANK[decision]:
                decision = action
                fields = dict(
                    category=hc.category, concept=hc.id, phrase=word, score=tok.cosine, threshold=ALIAS_COSINE
                )
        if decision == "allow":
            state = "calibrated" if self.calibration is not None else "uncalibrated"
            reasons = [
                f"generator space: no concept at threshold (nearest {c.id}: {scores[top]:.3f} < "
                f"{self.thresholds[top]:.3f}, {state})"
            ]
        return GeneratorSpaceResult(decision=decision, reasons=reasons, **fields, **base)


# ============================================================================================
# process-wide reuse
# ============================================================================================

_CACHE_ATTR = "_guard_generator_space_screens"
_CACHE_LOCK = threading.Lock()


def get_generator_space_screen(pipe: Any, policy: PolicySource) -> GeneratorSpaceScreen:
    """:meth:`GeneratorSpaceScreen.from_pipeline`, built once per (pipeline encoders and the tokens
    loaded into them, policy, calibration file) and kept on the pipeline object, so per-call use costs
    one encoder pass. Loading textual-inversion tokens, or a new policy or calibration, builds anew."""
    pol = load_policy(policy)
    path = resolve_calibration_path(pol)
    mtime = None
    if path is not None:
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            mtime = None  # load_calibration reports it
    key = (encoders_state(pipeline_encoders(pipe)), pol.sha256, path, mtime)
    with _CACHE_LOCK:
        cache = pipe.__dict__.get(_CACHE_ATTR)
        if cache is None:
            cache = {}
            object.__setattr__(pipe, _CACHE_ATTR, cache)
        s = cache.get(key)
        if s is None:
            s = GeneratorSpaceScreen.from_pipeline(pipe, pol, full=pol.screen.generator_space.enabled)
            cache.clear()  # one screen per pipeline: a new policy, calibration or token set replaces the old
            cache[key] = s
        return s
