"""Generator-space screen: an optional second prompt screen in the pipeline's own text-encoder space.

The sentence-model screen (:mod:`guard.screen.screen`) reads prompts the way people do. Adversarial
prompts optimised against CLIP (token soup that reads as gibberish to a sentence model) still have
to land near the concept in the space the *generator* conditions on. This screen embeds the prompt
with the pipeline's own text encoder(s) — the pooled / EOS-token embedding, as diffusers tokenises
it — and compares it with the policy's concept phrases embedded by the same encoder(s).

Cosine scales differ a lot between encoders, so thresholds are calibrated per model: ``guard
calibrate --model M --benign CSV`` takes a high quantile of benign prompts' scores per concept and
stores it beside the policy; the policy names the file in ``screen.generator_space.calibration``.

    gs = GeneratorSpaceScreen.from_pipeline(pipe, policy)   # loads the policy's calibration, if any
    results = gs.screen_batch(["a photo of ...", ...])      # GeneratorSpaceResult per prompt

    calib = calibrate(pipeline_encoders(pipe), policy, benign_prompts)
    save_calibration(calib, "policies/default.<fingerprint>.calibration.json")
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from guard.fileio import write_atomic
from guard.errors import GuardError, GuardInputError
from guard.policy import PolicySource, load_policy
from guard.policy.models import Concept, Policy
from guard.screen.normalize import normalize

logger = logging.getLogger("guard.screen.generator_space")

__all__ = [
    "CALIBRATION_FORMAT",
    "CALIBRATION_VERSION",
    "GeneratorSpaceResult",
    "GeneratorSpaceScreen",
    "calibrate",
    "default_calibration_path",
    "encode_prompts",
    "encoders_fingerprint",
    "get_generator_space_screen",
    "load_calibration",
    "model_fingerprint",
    "pipeline_encoders",
    "resolve_calibration_path",
    "save_calibration",
]

CALIBRATION_FORMAT = "guard.generator_space.calibration"
CALIBRATION_VERSION = 1
#: prompts longer than this many characters are refused outright (same rule as the text screen)
HARD_MAX_PROMPT_CHARS = 1_000_000
#: at most this many elements of one weight tensor are hashed by :func:`model_fingerprint`
_FP_SAMPLE = 1 << 20
#: config keys that say how a model was saved or is being run, not what it computes
_FP_SKIP_KEYS = frozenset({
    "transformers_version", "architectures", "dtype", "torch_dtype", "output_hidden_states",
    "output_attentions", "return_dict", "use_return_dict", "id2label", "label2id", "problem_type",
    "chunk_size_feed_forward", "is_encoder_decoder", "attn_implementation", "name_or_path",
    "use_cache", "tf_legacy_loss", "pruned_heads", "torchscript",
})

Encoder = tuple[Any, Any]  # (text_encoder, tokenizer)


# ============================================================================================
# encoding
# ============================================================================================


def _check_encoders(encoders: Sequence[Encoder]) -> list[Encoder]:
    if isinstance(encoders, tuple) and len(encoders) == 2 and not isinstance(encoders[0], tuple):
        encoders = [encoders]  # a single (text_encoder, tokenizer) pair
    out = list(encoders)
    if not out:
        raise GuardError("generator-space screen: no text encoder given")
    for i, pair in enumerate(out):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise GuardError(f"generator-space screen: encoders[{i}] must be a (text_encoder, tokenizer) pair")
        te, tok = pair
        if te is None or tok is None:
            raise GuardError(f"generator-space screen: encoders[{i}] has no "
                             f"{'text encoder' if te is None else 'tokenizer'}")
    return [tuple(p) for p in out]  # type: ignore[misc]


def _device_of(module: Any):
    import torch

    dev = getattr(module, "device", None)
    if isinstance(dev, torch.device) and dev.type != "meta":
        return dev
    for p in module.parameters():
        if p.device.type != "meta":
            return p.device
    return torch.device("cpu")


def _tokenize(tokenizer: Any, texts: list[str]):
    """Token ids as diffusers makes them: padded to the model's maximum length, truncated."""
    max_length = getattr(tokenizer, "model_max_length", None)
    if not isinstance(max_length, int) or max_length <= 0 or max_length > 100_000:
        max_length = 77
    enc = tokenizer(texts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    return enc.input_ids, enc.get("attention_mask")


def _pooled(text_encoder: Any, input_ids, attention_mask):
    """The pooled prompt embedding: ``text_embeds`` (with projection), else ``pooler_output`` (the
    EOS-token state after the final layer norm), else the attention-masked mean of the last hidden
    states (encoders without a pooled output, e.g. T5)."""
    import torch

    dev = _device_of(text_encoder)
    ids = input_ids.to(dev)
    kwargs: dict[str, Any] = {}
    cfg = getattr(text_encoder, "config", None)
    if attention_mask is not None and getattr(cfg, "use_attention_mask", False):
        kwargs["attention_mask"] = attention_mask.to(dev)
    out = text_encoder(ids, **kwargs)
    for name in ("text_embeds", "pooler_output"):
        v = getattr(out, name, None) if not isinstance(out, (tuple, list)) else None
        if v is not None:
            return v
    hidden = out[0] if isinstance(out, (tuple, list)) else out.last_hidden_state
    if attention_mask is None:
        return hidden.mean(dim=1)
    m = attention_mask.to(hidden.device, hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


def encode_prompts(
    text_encoder_or_encoders: Any,
    tokenizer: Any = None,
    texts: Sequence[str] | None = None,
    batch_size: int = 32,
    *,
    progress: bool | None = None,
    desc: str = "encoding",
) -> np.ndarray:
    """(n, d) unit-norm float32 pooled embeddings of ``texts`` in the generator's text space.

    ``encode_prompts(text_encoder, tokenizer, texts)`` for one encoder, or
    ``encode_prompts([(te, tok), (te_2, tok_2)], None, texts)`` for several (SDXL): each encoder's
    pooled output is L2-normalised, the outputs are concatenated and normalised again, so a cosine
    in the joint space is the mean of the per-encoder cosines.

    Tokenised as diffusers does (padding to ``model_max_length``, truncation), run in inference mode
    on each encoder's own device and dtype. Texts with identical token ids are encoded once.
    ``progress``: a tqdm bar on stderr (None: only for several batches and when stderr is a tty).
    """
    import torch

    if tokenizer is None and texts is None:
        raise TypeError("encode_prompts(text_encoder, tokenizer, texts) or encode_prompts(encoders, None, texts)")
    if tokenizer is None:
        encoders = _check_encoders(text_encoder_or_encoders)
    else:
        encoders = _check_encoders([(text_encoder_or_encoders, tokenizer)])
    if isinstance(texts, str):
        raise GuardInputError("expected a list of texts, got a single string")
    texts = list(texts or [])
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise GuardInputError(f"text {i} must be a string, got {type(t).__name__}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise GuardInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = len(texts)
    if n == 0:
        dim = 0
        for te, _ in encoders:
            cfg = getattr(te, "config", None)
            dim += int(getattr(cfg, "projection_dim", 0) if hasattr(te, "text_projection") else
                       getattr(cfg, "hidden_size", getattr(cfg, "d_model", 0)))
        return np.zeros((0, dim), np.float32)

    tokenized = [_tokenize(tok, texts) for _, tok in encoders]
    # encode each distinct token sequence once (casefolded views, repeated prompts...)
    keys = [b"".join(ids[i].numpy().tobytes() for ids, _ in tokenized) for i in range(n)]
    first: dict[bytes, int] = {}
    inverse = np.empty(n, dtype=np.int64)
    unique_rows: list[int] = []
    for i, k in enumerate(keys):
        j = first.get(k)
        if j is None:
            j = first[k] = len(unique_rows)
            unique_rows.append(i)
        inverse[i] = j
    rows = np.asarray(unique_rows, dtype=np.int64)

    n_batches = math.ceil(len(rows) / batch_size)
    if progress is None:
        progress = n_batches > 1 and sys.stderr.isatty()
    parts: list[list[np.ndarray]] = [[] for _ in encoders]
    from tqdm import tqdm

    with torch.inference_mode(), tqdm(total=len(rows), desc=desc, unit="text", disable=not progress,
                                      file=sys.stderr, leave=False) as bar:
        for s in range(0, len(rows), batch_size):
            sel = torch.from_numpy(rows[s : s + batch_size])
            for e, ((te, _), (ids, mask)) in enumerate(zip(encoders, tokenized)):
                pooled = _pooled(te, ids[sel], mask[sel] if mask is not None else None)
                parts[e].append(pooled.detach().to("cpu", torch.float32).numpy())
            bar.update(len(sel))
    per_encoder = [_unit(np.concatenate(p, axis=0)) for p in parts]
    joint = per_encoder[0] if len(per_encoder) == 1 else _unit(np.concatenate(per_encoder, axis=1))
    return np.ascontiguousarray(joint[inverse], dtype=np.float32)


# ============================================================================================
# fingerprints
# ============================================================================================


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def _config_for_fingerprint(text_encoder: Any) -> dict:
    cfg = getattr(text_encoder, "config", None)
    if cfg is None:
        d: dict = {}
    elif hasattr(cfg, "to_diff_dict") and hasattr(cfg, "to_dict"):
        d = cfg.to_dict()
    elif isinstance(cfg, dict):
        d = dict(cfg)
    else:
        d = dict(vars(cfg))
    d = {k: v for k, v in d.items() if not str(k).startswith("_") and k not in _FP_SKIP_KEYS}
    return _jsonable(d)


def _tensor_sample_bytes(t) -> bytes:
    """Up to ``_FP_SAMPLE`` evenly strided elements of ``t``, as float16 bytes (so a float32 model
    and its float16 copy share a fingerprint)."""
    import torch

    if t.device.type == "meta":
        raise GuardError("cannot fingerprint the text encoder: its weights are not loaded (meta device, "
                         "e.g. sequential CPU offload); fingerprint it before offloading")
    flat = t.detach().reshape(-1)
    step = max(1, math.ceil(flat.numel() / _FP_SAMPLE))
    sample = flat[::step].to("cpu", torch.float16).contiguous()
    return sample.numpy().tobytes()


def model_fingerprint(text_encoder: Any) -> str:
    """A short, stable id of a text encoder: sha256 over its class, its configuration (without
    keys that only say how it was saved or run), every parameter's name and shape, and a strided
    sample of the first, middle and last parameter tensors (as float16). The same weights give the
    same id in every process, in float32 or float16, on any device; other weights give another."""
    params = list(text_encoder.named_parameters())
    h = hashlib.sha256()
    h.update(b"guard-fp-v1\x00")
    h.update(type(text_encoder).__name__.encode() + b"\x00")
    h.update(json.dumps(_config_for_fingerprint(text_encoder), sort_keys=True).encode("utf-8"))
    for name, p in params:
        h.update(f"\x00{name}:{tuple(p.shape)}".encode())
    if params:
        picks = sorted({0, len(params) // 2, len(params) - 1})
        for i in picks:
            h.update(b"\x00" + _tensor_sample_bytes(params[i][1]))
    return h.hexdigest()[:16]


def encoders_fingerprint(encoders: Sequence[Encoder]) -> str:
    """:func:`model_fingerprint` of the only encoder, or a combined id for several (order matters)."""
    encoders = _check_encoders(encoders)
    fps = [model_fingerprint(te) for te, _ in encoders]
    if len(fps) == 1:
        return fps[0]
    return hashlib.sha256(("+".join(fps)).encode()).hexdigest()[:16]


def pipeline_encoders(pipe: Any) -> list[Encoder]:
    """The (text_encoder, tokenizer) pairs of a diffusers pipeline: ``text_encoder``/``tokenizer``
    and, when present (SDXL), ``text_encoder_2``/``tokenizer_2``."""
    out: list[Encoder] = []
    for te_name, tok_name in (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")):
        te = getattr(pipe, te_name, None)
        tok = getattr(pipe, tok_name, None)
        if te is not None and tok is not None:
            out.append((te, tok))
    if not out:
        raise GuardError(f"{type(pipe).__name__} has no text encoder and tokenizer "
                         "(text_encoder/tokenizer or text_encoder_2/tokenizer_2) to screen prompts with")
    return out


def _phrases_sha256(phrases: Sequence[str]) -> str:
    return hashlib.sha256("\x00".join(phrases).encode("utf-8")).hexdigest()[:16]


# ============================================================================================
# the screen
# ============================================================================================


@dataclass
class GeneratorSpaceResult:
    """The generator-space verdict on one prompt."""

    index: int
    decision: str  # allow | escalate | block
    concept: Optional[str]
    category: Optional[str]
    score: float
    threshold: Optional[float]
    phrase: Optional[str]
    reasons: list[str] = field(default_factory=list)
    elapsed_ms: float = 0.0

    @property
    def blocked(self) -> bool:
        return self.decision == "block"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "decision": self.decision,
            "concept": self.concept,
            "category": self.category,
            "score": round(float(self.score), 4),
            "threshold": None if self.threshold is None else round(float(self.threshold), 4),
            "phrase": self.phrase,
            "reasons": list(self.reasons),
            "elapsed_ms": round(self.elapsed_ms, 3),
        }


class GeneratorSpaceScreen:
    """Screens prompts in the generator's own text-encoder space. Thread-safe; build once per
    (pipeline, policy) and reuse: the concept phrases are embedded once, at construction.

    ``encoders``: ``[(text_encoder, tokenizer), ...]`` (see :func:`pipeline_encoders`).
    ``calibration``: a dict from :func:`calibrate` / :func:`load_calibration`; it must have been made
    with these encoders (same fingerprint), else :class:`GuardError`. Concepts it has no threshold
    for — or whose phrases changed since — use ``screen.generator_space.threshold``.
    """

    def __init__(self, encoders: Sequence[Encoder], policy: PolicySource, calibration: dict | None = None,
                 *, batch_size: int = 32, calibration_path: str | os.PathLike | None = None):
        self.encoders = _check_encoders(encoders)
        self.policy: Policy = load_policy(policy)
        self.cfg = self.policy.screen.generator_space
        self.batch_size = batch_size
        self._lock = threading.RLock()
        self.fingerprint = encoders_fingerprint(self.encoders)
        self.concepts: list[Concept] = [c for c in self.policy.concepts if c.action != "allow"]
        self._phrases: list[str] = []
        self._phrase_views: list[str] = []
        self._phrase_concept: list[int] = []
        self._concept_phrase_sha: list[str] = []
        for ci, c in enumerate(self.concepts):
            views = []
            for p in c.phrases:
                v = normalize(p).text if self.policy.screen.normalize else p
                self._phrases.append(p)
                self._phrase_views.append(v)
                self._phrase_concept.append(ci)
                views.append(v)
            self._concept_phrase_sha.append(_phrases_sha256(views))
        pc = np.asarray(self._phrase_concept, dtype=np.int64)
        self._starts = np.searchsorted(pc, np.arange(len(self.concepts) + 1))
        t0 = time.perf_counter()
        self._phrase_emb = self._encode(self._phrase_views, desc="embedding concept phrases")
        self.build_ms = (time.perf_counter() - t0) * 1000
        self.calibration = None
        self.calibration_path = os.fspath(calibration_path) if calibration_path is not None else None
        self.uncalibrated: list[str] = []
        self.thresholds = np.full(len(self.concepts), float(self.cfg.threshold), dtype=np.float32)
        if calibration is not None:
            self._apply_calibration(calibration)

    # ---------------------------------------------------------------- construction helpers

    @classmethod
    def from_pipeline(cls, pipe: Any, policy: PolicySource, **kwargs: Any) -> "GeneratorSpaceScreen":
        """The screen for ``pipe``'s text encoder(s) under ``policy``, with the calibration file the
        policy names (``screen.generator_space.calibration``, relative to the policy file)."""
        pol = load_policy(policy)
        path = resolve_calibration_path(pol)
        calib = load_calibration(path) if path is not None else None
        return cls(pipeline_encoders(pipe), pol, calib, calibration_path=path, **kwargs)

    def _apply_calibration(self, calib: dict) -> None:
        where = self.calibration_path or "the calibration"
        _validate_calibration(calib, where)
        fp = calib["model_fingerprint"]
        if fp != self.fingerprint:
            raise GuardError(
                f"{where} was made for text encoder fingerprint {fp}, but this pipeline's text encoder(s) "
                f"have fingerprint {self.fingerprint}; thresholds do not carry over between models: run "
                f"`guard calibrate --model <this model> --benign <prompts>` and point "
                f"screen.generator_space.calibration at the new file")
        thresholds = calib["thresholds"]
        meta = calib.get("concepts") or {}
        for ci, c in enumerate(self.concepts):
            t = thresholds.get(c.id)
            if t is None:
                self.uncalibrated.append(c.id)
                continue
            sha = (meta.get(c.id) or {}).get("phrases_sha256")
            if sha is not None and sha != self._concept_phrase_sha[ci]:
                self.uncalibrated.append(c.id)
                continue
            self.thresholds[ci] = float(t)
        if self.uncalibrated:
            logger.warning("%s has no current threshold for %d concept(s) (new or changed phrases: %s); "
                           "they use screen.generator_space.threshold %.3f; run `guard calibrate` again",
                           where, len(self.uncalibrated), ", ".join(self.uncalibrated[:5]),
                           self.cfg.threshold)
        self.calibration = calib

    # ---------------------------------------------------------------- scoring

    @property
    def concept_ids(self) -> list[str]:
        return [c.id for c in self.concepts]

    def _encode(self, texts: list[str], desc: str = "encoding") -> np.ndarray:
        with self._lock:
            return encode_prompts(self.encoders, None, texts, batch_size=self.batch_size, desc=desc)

    def _check_prompts(self, prompts: Sequence[str]) -> list[str]:
        if isinstance(prompts, str):
            raise GuardInputError("expected a list of prompts, got a single string")
        prompts = list(prompts)
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise GuardInputError(f"prompt {i} must be a string, got {type(p).__name__}")
            if len(p) > HARD_MAX_PROMPT_CHARS:
                raise GuardInputError(
                    f"prompt {i} is {len(p)} characters long; at most {HARD_MAX_PROMPT_CHARS} are accepted")
        return prompts

    def _views(self, prompt: str) -> list[str]:
        """What the generator sees (the raw prompt) and, when normalisation is on, the normalised
        text (invisible characters and look-alike letters undone). Empty prompts have no view."""
        raw = prompt[: self.policy.screen.max_prompt_chars]
        if not raw.strip():
            return []
        views = [raw]
        if self.policy.screen.normalize:
            n = normalize(raw).text
            if n and n != raw:
                views.append(n)
        return views

    def _score_full(self, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(scores, phrase index) each (n_prompts, n_concepts): best cosine of any view of the prompt
        to any phrase of each concept, and which phrase. Empty prompts score -1."""
        prompts = self._check_prompts(prompts)
        n, n_c = len(prompts), len(self.concepts)
        scores = np.full((n, n_c), -1.0, dtype=np.float32)
        best_phrase = np.zeros((n, n_c), dtype=np.int64)
        all_views = [self._views(p) for p in prompts]
        flat = [v for vs in all_views for v in vs]
        if not flat or n_c == 0:
            return scores, best_phrase
        emb = self._encode(flat, desc="embedding prompts")
        sims = emb @ self._phrase_emb.T  # (n_views, n_phrases)
        owner = np.repeat(np.arange(n), [len(vs) for vs in all_views])
        # best over the views of each prompt
        per_prompt = np.full((n, sims.shape[1]), -np.inf, dtype=np.float32)
        np.maximum.at(per_prompt, owner, sims)
        for ci in range(n_c):
            lo, hi = int(self._starts[ci]), int(self._starts[ci + 1])
            block = per_prompt[:, lo:hi]
            arg = block.argmax(axis=1)
            best_phrase[:, ci] = lo + arg
            scores[:, ci] = block[np.arange(n), arg]
        empty = np.asarray([len(vs) == 0 for vs in all_views], dtype=bool)
        scores[empty] = -1.0
        return np.clip(scores, -1.0, 1.0), best_phrase

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        """(n_prompts, n_concepts) best cosine of each prompt to each (non-allow) concept, in
        :attr:`concept_ids` order. Empty prompts score -1."""
        return self._score_full(prompts)[0]

    def screen(self, prompt: str) -> GeneratorSpaceResult:
        return self.screen_batch([prompt])[0]

    def _action_for(self, concept: Concept) -> str:
        # never more than the concept itself asks for: an 'escalate' concept is not blocked here
        if self.cfg.action == "block" and concept.action == "escalate":
            return "escalate"
        return self.cfg.action

    def screen_batch(self, prompts: Sequence[str]) -> list[GeneratorSpaceResult]:
        """One verdict per prompt: the config's action (``escalate`` by default) when the prompt is at
        or above a concept's threshold, else ``allow``."""
        t0 = time.perf_counter()
        prompts = self._check_prompts(prompts)
        scores, phrase_idx = self._score_full(prompts)
        each = (time.perf_counter() - t0) * 1000 / max(1, len(prompts))
        calibrated = "calibrated" if self.calibration is not None else "uncalibrated"
        out: list[GeneratorSpaceResult] = []
        for i, p in enumerate(prompts):
            if not self._views(p):
                out.append(GeneratorSpaceResult(i, "allow", None, None, -1.0, None, None, ["empty prompt"], each))
                continue
            if not self.concepts:
                out.append(GeneratorSpaceResult(i, "allow", None, None, 0.0, None, None,
                                                ["policy has no concepts"], each))
                continue
            margin = scores[i] - self.thresholds
            hits = [ci for ci in np.argsort(-margin) if margin[ci] >= 0]
            top = int(hits[0]) if hits else int(np.argmax(margin))
            c = self.concepts[top]
            s, thr = float(scores[i, top]), float(self.thresholds[top])
            phrase = self._phrases[int(phrase_idx[i, top])]
            if hits:
                decision = max((self._action_for(self.concepts[int(ci)]) for ci in hits),
                               key=("escalate", "block").index)
                reasons = [f"generator space: {self.concepts[int(ci)].id} ({self.concepts[int(ci)].category}): "
                           f"{scores[i, ci]:.3f} >= {self.thresholds[ci]:.3f}"
                           f"{'' if self.concepts[int(ci)].id not in self.uncalibrated else ' (uncalibrated)'}, "
                           f"nearest {self._phrases[int(phrase_idx[i, ci])]!r}" for ci in hits[:3]]
            else:
                decision = "allow"
                reasons = [f"generator space: no concept at threshold (nearest {c.id}: {s:.3f} < {thr:.3f}, "
                           f"{calibrated})"]
            out.append(GeneratorSpaceResult(i, decision, c.id, c.category, s, thr, phrase, reasons, each))
        return out


# ============================================================================================
# process-wide reuse
# ============================================================================================

_CACHE_ATTR = "_guard_generator_space_screens"
_CACHE_LOCK = threading.Lock()


def get_generator_space_screen(pipe: Any, policy: PolicySource) -> GeneratorSpaceScreen:
    """:meth:`GeneratorSpaceScreen.from_pipeline`, built once per (pipeline encoders, policy,
    calibration file) and kept on the pipeline object, so per-call use costs one encoder pass."""
    pol = load_policy(policy)
    path = resolve_calibration_path(pol)
    mtime = None
    if path is not None:
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            mtime = None  # load_calibration reports it
    encs = pipeline_encoders(pipe)
    key = (tuple(id(te) for te, _ in encs), pol.sha256, path, mtime)
    with _CACHE_LOCK:
        cache = pipe.__dict__.get(_CACHE_ATTR)
        if cache is None:
            cache = {}
            object.__setattr__(pipe, _CACHE_ATTR, cache)
        s = cache.get(key)
        if s is None:
            s = GeneratorSpaceScreen.from_pipeline(pipe, pol)
            cache.clear()  # one screen per pipeline: a new policy or calibration replaces the old
            cache[key] = s
        return s


# ============================================================================================
# calibration
# ============================================================================================


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def calibrate(encoders: Sequence[Encoder], policy: PolicySource, benign_prompts: Sequence[str],
              quantile: float = 0.999, margin: float = 0.0, *, batch_size: int = 32) -> dict:
    """Per-concept thresholds from benign prompts: the ``quantile`` of their best cosine to each
    concept, plus ``margin``, at most 1. Returns the calibration dict (see :func:`save_calibration`);
    empty prompts are left out of the count."""
    from guard import __version__

    if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0.0 < quantile <= 1.0:
        raise GuardInputError(f"quantile must be within (0, 1], got {quantile!r}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) \
            or abs(margin) >= 2.0:
        raise GuardInputError(f"margin must be a small finite number, got {margin!r}")
    screen = GeneratorSpaceScreen(encoders, policy, batch_size=batch_size)
    prompts = screen._check_prompts(benign_prompts)
    prompts = [p for p in prompts if screen._views(p)]
    if not prompts:
        raise GuardInputError("no benign prompts to calibrate on (all were empty)")
    scores = screen.score(prompts)
    thresholds: dict[str, float] = {}
    concepts: dict[str, dict[str, Any]] = {}
    for ci, c in enumerate(screen.concepts):
        col = scores[:, ci].astype(np.float64)
        q = float(np.quantile(col, quantile))
        t = min(1.0, q + float(margin))
        thresholds[c.id] = t
        concepts[c.id] = {
            "category": c.category,
            "phrases_sha256": screen._concept_phrase_sha[ci],
            "benign_quantile": q,
            "benign_max": float(col.max()),
            "benign_mean": float(col.mean()),
            "n_above": int((col >= t).sum()),
        }
    return {
        "format": CALIBRATION_FORMAT,
        "version": CALIBRATION_VERSION,
        "model_fingerprint": screen.fingerprint,
        "encoders": [{"class": type(te).__name__, "fingerprint": model_fingerprint(te)}
                     for te, _ in screen.encoders],
        "policy": {"name": screen.policy.name, "sha256": screen.policy.sha256},
        "n_benign": len(prompts),
        "quantile": float(quantile),
        "margin": float(margin),
        "created": _utc_now(),
        "guard_version": __version__,
        "thresholds": thresholds,
        "concepts": concepts,
    }


def _validate_calibration(calib: Any, where: str) -> None:
    def bad(msg: str) -> GuardError:
        return GuardError(f"{where}: not a valid generator-space calibration: {msg}; "
                          "write a new one with `guard calibrate`")

    if not isinstance(calib, dict):
        raise bad(f"expected a JSON object, got {type(calib).__name__}")
    fmt = calib.get("format", CALIBRATION_FORMAT)
    if fmt != CALIBRATION_FORMAT:
        raise bad(f"format is {fmt!r}, expected {CALIBRATION_FORMAT!r}")
    ver = calib.get("version", CALIBRATION_VERSION)
    if ver != CALIBRATION_VERSION:
        raise bad(f"version {ver!r} is not supported (this guard reads version {CALIBRATION_VERSION})")
    fp = calib.get("model_fingerprint")
    if not isinstance(fp, str) or not fp:
        raise bad("'model_fingerprint' is missing or not a string")
    th = calib.get("thresholds")
    if not isinstance(th, dict):
        raise bad("'thresholds' is missing or not a mapping of concept id to threshold")
    for k, v in th.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not -1.0 <= v <= 1.0:
            raise bad(f"threshold of {k!r} must be a number within [-1, 1], got {v!r}")
    concepts = calib.get("concepts", {})
    if not isinstance(concepts, dict) or not all(isinstance(v, dict) for v in concepts.values()):
        raise bad("'concepts' must be a mapping of concept id to details")
    for key, typ in (("n_benign", int), ("quantile", (int, float)), ("created", str), ("policy", dict)):
        if key in calib and not isinstance(calib[key], typ):
            raise bad(f"{key!r} has the wrong type ({type(calib[key]).__name__})")


def save_calibration(calib: dict, path: str | os.PathLike) -> Path:
    """Write ``calib`` as JSON, atomically (readers see the old file or the whole new one)."""
    p = Path(os.path.expanduser(os.fspath(path)))
    _validate_calibration(calib, os.fspath(p))
    text = json.dumps(calib, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    try:
        write_atomic(p, text)
    except OSError as e:
        raise GuardError(f"cannot write calibration file {p}: {e.strerror or e}") from None
    return p


def load_calibration(path: str | os.PathLike) -> dict:
    """Read and validate a calibration file; a missing or corrupt file is a :class:`GuardError`
    naming it."""
    p = Path(os.path.expanduser(os.fspath(path)))
    shown = os.fspath(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GuardError(f"calibration file not found: {shown} (write it with `guard calibrate`)") from None
    except IsADirectoryError:
        raise GuardError(f"calibration path {shown} is a directory, not a file") from None
    except UnicodeDecodeError as e:
        raise GuardError(f"{shown}: not a valid generator-space calibration: not UTF-8 text "
                         f"({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise GuardError(f"cannot read calibration file {shown}: {e.strerror or e}") from None
    try:
        calib = json.loads(text)
    except json.JSONDecodeError as e:
        raise GuardError(f"{shown}:{e.lineno}:{e.colno}: not a valid generator-space calibration: "
                         f"malformed JSON ({e.msg}); write a new one with `guard calibrate`") from None
    _validate_calibration(calib, shown)
    return calib


def resolve_calibration_path(policy: Policy) -> Optional[str]:
    """The calibration file a policy names, as an absolute path: relative paths are taken from the
    policy file's directory (from the working directory for policies not loaded from a file)."""
    ref = policy.screen.generator_space.calibration
    if not ref:
        return None
    p = Path(os.path.expanduser(ref))
    if not p.is_absolute():
        base = policy.base_path  # base_dir, else the policy file's directory, else the working directory
        p = base / p
    return os.fspath(p.resolve())


def default_calibration_path(policy: Policy, fingerprint: str, cwd: Path | None = None) -> Path:
    """``<policy stem>.<fingerprint>.calibration.json`` beside the policy file; in the working
    directory for built-in policies and policies not loaded from a file."""
    from guard.policy.loader import builtin_policy_dir

    cwd = cwd or Path.cwd()
    if policy.source:
        src = Path(policy.source).resolve()
        try:
            builtin = src.parent.resolve() == builtin_policy_dir().resolve()
        except OSError:
            builtin = False
        stem = src.stem
        if not builtin:
            return src.parent / f"{stem}.{fingerprint}.calibration.json"
        return cwd / f"{stem}.{fingerprint}.calibration.json"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in policy.name) or "policy"
    return cwd / f"{safe}.{fingerprint}.calibration.json"
