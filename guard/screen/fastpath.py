"""Allow-only fast path of the prompt screen (a cascade): a cheap first stage that lets a clearly benign
prompt through without the sentence model, and sends everything else through the full, unchanged screen.

One MiniLM pass over a whole I2P-length prompt costs about 4 ms on 2 cores, the full screen about 8 ms;
the first stage costs a fraction of a millisecond:

- **Hard guards** (never an early exit): an empty prompt, any change normalisation made (obfuscation
  undone, diacritics, NFKC forms, a truncated or invalid-Unicode prompt), any key-term hit of the
  lexical layer (exact or fuzzy), a stray special token, signs of an optimised prompt (suspicion at
  or over :data:`MAX_SUSPICION`), text that is not English or reads as another language. Each of
  them goes through the full path.
- **The gate**: one logistic regression over cheap signals -- the static MiniLM-derived vector of the
  de-obfuscated prompt (:mod:`guard.screen.static_embed`), its calibrated cosines to every concept's
  phrases (best per concept, per category, and to the benign look-alikes), the suspicion signals and
  the prompt's shape. Its target is "the full path does not allow this prompt, or it is labelled
  unsafe". A prompt exits early only when its gate logit is under the threshold.
- **The threshold** is chosen on TRAINING rows, out of fold (grouped folds), so that of the unsafe
  training rows that pass the guards and that the full path blocks or escalates, at most
  :data:`TARGET_MISS` (0.1 %) -- overall and in each category -- would have exited early
  (:func:`guard.screen.train.train_gate`, run by ``guard train-screen``). Evaluation rows play no part.

The gate is an artifact next to the learned model (``guard/screen/models/fastgate-v1.npz`` +
``.json``) and holds the fingerprint of the learned model and of the policy's screen (concepts,
phrases, key terms, rules, screen settings) it was calibrated against: with another model, another
policy screen or a stricter sensitivity than ``medium`` the fast path is off (logged), as it is
under ``screen.fast_path: false``. An early-allowed prompt's report says so in words: the stage,
the gate score and its threshold.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from guard.errors import GuardError
from guard.screen.features import CATEGORIES
from guard.screen.multilingual import has_special_token, looks_english, reads_as_language
from guard.screen.nude_context import digest as nude_context_digest

if TYPE_CHECKING:  # pragma: no cover
    from guard.screen.screen import PromptScreen

logger = logging.getLogger(__name__)

GATE_FORMAT = "guard-fast-gate/1"
MODEL_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_GATE = MODEL_DIR / "fastgate-v1"
#: at most this share of the flagged unsafe training rows (overall and per category) may exit early
TARGET_MISS = 0.001
#: a prompt whose suspicion reaches this goes through the full path (the form-only escalation
#: starts at 0.5, the policy's suspicion threshold at 0.4)
MAX_SUSPICION = 0.3
#: screen settings that do not change what the full path decides for an English, unobfuscated
#: prompt the gate may exit (or that the fast path handles itself)
_NOT_DIGESTED = {"fast_path", "sensitivity", "enabled", "generator_space"}
SHAPE_NAMES = ("shape:log_words", "shape:log_chars", "shape:one_word", "shape:log_views")
SUSPICION_NAMES = ("sus:score", "sus:unknown", "sus:fragmentation", "sus:symbols", "sus:punct")


def policy_digest(screen: PromptScreen) -> str:
    """sha256 (24 hex) of what the full path's decision depends on in a policy: every concept (id,
    category, action, threshold, phrases, key terms, contrast), the rules and the screen settings
    (not ``fast_path``, ``sensitivity`` -- handled apart -- nor the generator-space screen), and the
    word lists of :mod:`guard.screen.nude_context`, which sit in code."""
    pol = screen.policy
    cfg = pol.screen.model_dump(mode="json")
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in cfg.items() if k not in _NOT_DIGESTED}, sort_keys=True).encode())
    for c in pol.concepts:
        d = c.model_dump(mode="json")
        d["_threshold"] = pol.threshold_for(c)
        h.update(b"\x00" + json.dumps(d, sort_keys=True, default=str).encode())
    h.update(b"\x00rules" + json.dumps([r.model_dump(mode="json") for r in pol.rules], sort_keys=True).encode())
    h.update(b"\x00nude_context" + nude_context_digest().encode())  # its word lists live in code, not the policy
    return h.hexdigest()[:24]


def model_fingerprint(model) -> str:
    """sha256 (16 hex) of a learned model's numbers and operating-point tails."""
    h = hashlib.sha256()
    for name in ("coef", "intercept", "mean", "scale", "coef_ml", "intercept_ml"):
        a = getattr(model, name, None)
        if a is not None:
            h.update(name.encode() + np.ascontiguousarray(a, np.float32).tobytes())
    h.update(json.dumps(model.meta.get("tail_n", {}), sort_keys=True).encode())
    for k in sorted(getattr(model, "tails", {}) or {}):
        h.update(k.encode() + np.ascontiguousarray(model.tails[k], np.float32).tobytes())
    return h.hexdigest()[:16]


def _stricter_than_medium(sensitivity) -> str | None:
    """Why a sensitivity setting is stricter than the gate's calibration (``medium``), or None."""
    from guard.screen.learned import SENSITIVITY_FPR

    items = sensitivity.items() if isinstance(sensitivity, dict) else [("all categories", sensitivity)]
    for cat, s in items:
        fpr = SENSITIVITY_FPR.get(s) if isinstance(s, str) else float(s)
        if fpr is None or fpr > SENSITIVITY_FPR["medium"]:
            return f"sensitivity {s!r} for {cat} is stricter than medium, the fast path's calibration"
    return None


@dataclass
class GateInput:
    """What the first stage found for one prompt: why it must take the full path (None: it may exit)
    and, when it may, its feature row."""

    guard: str | None
    row: np.ndarray | None = None
    suspicion: float | None = None
    #: what the full path would compute again, when the first stage did (None: not computed): the
    #: lexical layer's hits of the prompt's readings and the prompt's Suspicion
    lexical: dict | None = None
    suspicion_of: Any = None


class CheapSignals:
    """The first stage's signals for one policy's screen: the hard guards and the gate's feature row."""

    def __init__(self, screen: PromptScreen, static):
        self.screen = screen
        self.static = static
        self._phrase_mat = screen._phrase_mat
        self._starts = screen._starts[:-1]
        concepts = screen._concepts
        self.concept_ids = [c.id for c in concepts]
        self._cat_cols = [np.asarray(screen._category_concepts(k), np.int64) for k in CATEGORIES]
        self._benign_cols = np.flatnonzero(screen._allow_phrase)
        # each concept's mean phrase direction: every segment and word window of a long prompt is
        # scored against these (49 rows, not 1,929 phrases), so that one risky part of a long prompt
        # is not averaged away in the whole prompt's vector
        cent = np.stack([self._phrase_mat[a:b].mean(0) for a, b in zip(screen._starts[:-1], screen._starts[1:])])
        self._centroids = (cent / np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        self.names = (
            [f"static[{i}]" for i in range(static.dim)]
            + [f"ssim:{c}" for c in self.concept_ids]
            + [f"scat:{k}" for k in CATEGORIES]
            + ["sbenign"]
            + [f"vcent:{c}" for c in self.concept_ids]
            + [f"vcat:{k}" for k in CATEGORIES]
            + list(SUSPICION_NAMES)
            + list(SHAPE_NAMES)
        )

    def guard_of(self, prompt: str, views: tuple) -> tuple[str | None, Any, dict | None]:
        """Why ``prompt`` (with its ``PromptScreen._views`` tuple) must take the full path, or None;
        its suspicion and its lexical hits (None where not computed)."""
        scr = self.screen
        vs, _kinds, texts, tr, _src = views
        if not vs or not texts:
            return "empty prompt", None, None
        # every transform: the obfuscations, and diacritics or NFKC forms, which an obfuscated copy may
        # carry alone ("ṕŕisóń cáge")
        undone = sorted(set(tr), key=tr.index)
        if undone:
            return f"normalisation undid {', '.join(undone)}", None, None
        text = texts[0]
        if has_special_token(text):
            return "a stray special token", None, None
        lex = scr.lexical.match(texts) if scr.lexical is not None else None
        if lex:
            return "a key term of a concept", None, lex
        sus = scr.suspicion.score(prompt[: scr.cfg.max_prompt_chars]) if scr.suspicion is not None else None
        if sus is not None and (sus.special_tokens or sus.score >= MAX_SUSPICION):
            return f"signs of an optimised prompt (suspicion {sus.score:.2f})", sus, lex
        if not looks_english(text, scr._dictionary) or reads_as_language(text):
            return "not English", sus, lex
        return None, sus, lex

    def row(self, views: tuple, sus) -> np.ndarray:
        """The gate's feature row (float32) of an unguarded prompt."""
        vs, _kinds, texts, _tr, src = views
        text = texts[0]
        spans = [sp for vi, sp in src if vi == 0]  # the whole text and its segments and word windows
        v, span_rows = self.static.encode_with_spans(text, spans)  # (one tokenisation for both)
        out = np.zeros(len(self.names), np.float32)
        d = self.static.dim
        out[:d] = v
        o = d
        nc = len(self.concept_ids)
        if len(self._phrase_mat) and v.any():
            sims = self.static.calibrate(self._phrase_mat @ v)
            per = np.maximum.reduceat(sims, self._starts)
            out[o : o + nc] = per
            for k, cols in enumerate(self._cat_cols):
                out[o + nc + k] = per[cols].max() if len(cols) else -1.0
            out[o + nc + len(CATEGORIES)] = sims[self._benign_cols].max() if len(self._benign_cols) else -1.0
        else:
            out[o : o + nc + len(CATEGORIES) + 1] = -1.0
        o += nc + len(CATEGORIES) + 1
        cent = span_rows @ self._centroids.T  # (n_views, n_concepts)
        per_view = cent.max(axis=0)
        out[o : o + nc] = per_view
        for k, cols in enumerate(self._cat_cols):
            out[o + nc + k] = per_view[cols].max() if len(cols) else -1.0
        o += nc + len(CATEGORIES)
        if sus is not None:
            out[o : o + 5] = (
                sus.score,
                sus.unknown_share,
                sus.fragmentation,
                min(5, sus.symbols_in_words),
                min(5, sus.punct_runs),
            )
        o += 5
        words = len(text.split())
        out[o : o + 4] = (math.log1p(words), math.log1p(len(text)), 1.0 if words <= 1 else 0.0, math.log1p(len(vs)))
        return out

    def inputs(self, prompt: str, views: tuple) -> GateInput:
        guard, sus, lex = self.guard_of(prompt, views)
        row = self.row(views, sus) if guard is None else None
        return GateInput(guard, row, None if sus is None else float(sus.score), lex, sus)


class FastGate:
    """The fitted gate: standardiser, logistic-regression weights and the early-exit threshold (a logit)."""

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict, source: str = "<arrays>"):
        if meta.get("format") != GATE_FORMAT:
            raise GuardError(f"{source}: fast-path gate format {meta.get('format')!r}; expected {GATE_FORMAT!r}")
        try:
            self.mean = np.asarray(arrays["mean"], np.float32)
            self.scale = np.asarray(arrays["scale"], np.float32)
            self.coef = np.asarray(arrays["coef"], np.float32).reshape(-1)
            self.intercept = float(np.asarray(arrays["intercept"]).reshape(-1)[0])
            self.threshold = float(meta["threshold_logit"])
        except KeyError as e:
            raise GuardError(f"{source}: fast-path gate lacks {e.args[0]!r}") from e
        if not (self.mean.shape == self.scale.shape == self.coef.shape):
            raise GuardError(
                f"{source}: fast-path gate arrays disagree: mean {self.mean.shape}, scale {self.scale.shape}, "
                f"coef {self.coef.shape}"
            )
        self.meta = meta
        self.source = source
        self._w = (self.coef / self.scale).astype(np.float32)
        self._b = np.float32(self.intercept - float((self.mean / self.scale) @ self.coef))

    @property
    def n_features(self) -> int:
        return len(self.coef)

    def logits(self, rows: np.ndarray) -> np.ndarray:
        """(n,) gate logits of raw feature rows (standardised through the folded weights)."""
        return np.atleast_2d(np.asarray(rows, np.float32)) @ self._w + self._b

    @property
    def threshold_proba(self) -> float:
        return sigmoid(self.threshold)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_GATE) -> FastGate:
        base = Path(path)
        base = base.with_suffix("") if base.suffix in (".npz", ".json") else base
        npz, js = Path(str(base) + ".npz"), Path(str(base) + ".json")
        try:
            meta = json.loads(js.read_text(encoding="utf-8"))
            with np.load(npz, allow_pickle=False) as z:
                arrays = {k: np.asarray(z[k]) for k in z.files}
        except (OSError, ValueError) as e:
            raise GuardError(f"cannot load the fast-path gate {base}(.npz|.json): {e}") from e
        if not isinstance(meta, dict):
            raise GuardError(f"{js}: fast-path gate metadata must be a JSON object")
        return cls(arrays, meta, source=str(js))

    def save(self, path: str | Path) -> None:
        import io

        from guard.fileio import write_atomic

        base = Path(path)
        buf = io.BytesIO()
        np.savez(
            buf, mean=self.mean, scale=self.scale, coef=self.coef, intercept=np.asarray([self.intercept], np.float32)
        )
        for path, data in ((Path(str(base) + ".npz"), buf.getvalue()), (Path(str(base) + ".json"), None)):
            write_atomic(path, data if data is not None else (json.dumps(self.meta, indent=1) + "\n").encode())
            os.chmod(path, 0o644)  # (a package file: readable by all, as the other artifacts)


def sigmoid(z: float) -> float:
    """The logistic function of ``z``, clamped to +-60 so that it never overflows."""
    return float(1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z)))))


class FastPath:
    """A policy screen's fast path: the cheap signals and the gate (see :func:`build_for`). Until
    ``ready`` is set (the static token table being built on a fresh cache) every prompt takes the full
    path."""

    def __init__(self, signals: CheapSignals | None, gate: FastGate):
        self.signals = signals
        self.gate = gate
        self.ready = threading.Event()
        if signals is not None:
            self.ready.set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the fast path is on (True), or ``timeout`` seconds passed (False)."""
        return self.ready.wait(timeout)

    def decide(self, prompts: Sequence[str], views: Sequence[tuple]) -> list[tuple[float, float] | None]:
        """Per prompt: ``(gate score, suspicion)`` when it exits early, else None (full path)."""
        return self.decide_with_inputs(prompts, views)[0]

    def decide_with_inputs(
        self, prompts: Sequence[str], views: Sequence[tuple]
    ) -> tuple[list[tuple[float, float] | None], list[GateInput | None]]:
        """:meth:`decide`, and each prompt's :class:`GateInput` (None while the fast path is not ready),
        whose lexical hits and suspicion the full path reuses."""
        if not self.ready.is_set() or self.signals is None:
            return [None] * len(prompts), [None] * len(prompts)
        inputs = [self.signals.inputs(p, v) for p, v in zip(prompts, views)]
        live = [i for i, g in enumerate(inputs) if g.guard is None]
        out: list[tuple[float, float] | None] = [None] * len(inputs)
        if not live:
            return out, inputs
        z = self.gate.logits(np.stack([inputs[i].row for i in live])).tolist()
        for i, zi in zip(live, z):
            if zi < self.gate.threshold:
                out[i] = (zi, inputs[i].suspicion)
        return out, inputs

    def reason(self, logit: float) -> str:
        return (
            f"fast path: clearly benign (gate score {sigmoid(logit):.4f} < {self.gate.threshold_proba:.4f} "
            "to take the full screen; no key term, obfuscation, stray token or sign of an optimised prompt, "
            "English); the full screen was not run"
        )


_GATES: dict[str, FastGate] = {}
_GATES_LOCK = threading.Lock()


def get_gate(path: str | Path = DEFAULT_GATE) -> FastGate:
    key = str(path)
    with _GATES_LOCK:
        g = _GATES.get(key)
        if g is None:
            g = _GATES[key] = FastGate.load(path)
        return g


def build_for(screen: PromptScreen, gate_path: str | Path | None = None) -> FastPath | None:
    """The fast path of a policy's screen, or None (with the reason logged) when the policy turns it
    off or the shipped gate was not calibrated for this screen."""
    cfg = screen.cfg
    if not getattr(cfg, "fast_path", False):
        return None

    def off(why: str, warn: bool = False) -> None:
        (logger.warning if warn else logger.info)("screen fast path off for policy %s: %s", screen.policy.name, why)

    if screen.learned is None:
        return off("the learned decision is off")
    why = _stricter_than_medium(cfg.sensitivity)
    if why:
        return off(why)
    try:
        gate = get_gate(gate_path or DEFAULT_GATE)
    except GuardError as e:
        return off(str(e), warn=True)
    want = gate.meta.get("calibrated_for", {})
    if want.get("model") != model_fingerprint(screen.learned):
        return off("the gate was calibrated against another learned model (retrain with guard train-screen)", True)
    if want.get("policy_screen") != policy_digest(screen):
        if screen.policy.name == want.get("policy"):  # the gate's own policy changed since it was fitted
            return off(
                f"policy {screen.policy.name}'s screen (concepts, phrases, key terms, rules or settings) changed "
                "since the gate was fitted; refit it with guard train-screen --fast-gate-only",
                warn=True,
            )
        return off("the gate was calibrated against another policy screen (its concepts, rules or settings)")
    from guard.screen.static_embed import table_path

    fast = FastPath(None, gate)

    def attach() -> str | None:
        """Build the cheap signals and switch the fast path on; or why not."""
        from guard.screen.static_embed import StaticUnavailable, get_static_encoder

        try:
            static = get_static_encoder(screen.embedder)
        except StaticUnavailable as e:
            return f"static encoder unavailable: {e}"
        if want.get("static") != static.fingerprint:
            return "the gate was calibrated with another static encoder"
        signals = CheapSignals(screen, static)
        if len(signals.names) != gate.n_features:
            return f"the gate has {gate.n_features} features, this screen gives {len(signals.names)}"
        fast.signals = signals
        fast.ready.set()
        return None

    quantised = bool(getattr(screen.embedder, "quantize", None))
    if quantised or getattr(screen.embedder, "path", None) is None or table_path(screen.embedder).is_file():
        why = attach()  # the token table is cached: the fast path is on from the start
        return off(why, warn=True) if why else fast

    def build() -> None:
        why = attach()
        if why:
            logger.warning("screen fast path off for policy %s: %s", screen.policy.name, why)
        else:
            logger.info("screen fast path on for policy %s (static token table built and cached)", screen.policy.name)

    # a fresh cache: the static token table (one encoder pass over the vocabulary, ~20 s on 2 idle cores)
    # is built in the background, and every prompt takes the full path until it is there
    logger.info("screen fast path for policy %s: building the static token table in the background", screen.policy.name)
    threading.Thread(target=build, name="guard-fast-path-table", daemon=True).start()
    return fast


__all__ = [
    "DEFAULT_GATE",
    "MAX_SUSPICION",
    "TARGET_MISS",
    "CheapSignals",
    "FastGate",
    "FastPath",
    "build_for",
    "model_fingerprint",
    "policy_digest",
]
