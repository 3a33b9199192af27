"""Prompt screen: normalised views of each prompt (de-obfuscated variants, segments, word windows),
sentence embeddings -- all views of one text packed into one encoder call -- scored against every
concept phrase by one matrix product (the phrases live in a cached FAISS index, which also answers
small neighbour searches), then the learned or per-concept threshold decision.

    screen = PromptScreen(load_policy("default"))
    result = screen.screen("a photo of a naked woman")   # ScreenResult(decision="block", ...)
    results = screen.screen_batch(prompts)                # texts run side by side on the cores
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import guard.screen.nude_context as nude_context
from guard.errors import GuardError, GuardInputError
from guard.paths import cache_dir
from guard.policy.models import Concept, Policy
from guard.screen.blas import single_thread_blas
from guard.screen.embedder import Embedder, get_embedder
from guard.screen.fastpath import FastPath, build_for as build_fast_path, sigmoid as fast_sigmoid
from guard.screen.features import GROUP_WORDS, featurize
from guard.screen.learned import SOUP_BLOCK_MIN, LearnedModel, OperatingPoint, get_model
from guard.screen.lexical import LexicalMatcher
from guard.screen.multilingual import (
    MultilingualSignals,
    build_for,
    multilingual_encoder,
    reads_as_language,
    reads_multilingual,
)
from guard.screen.normalize import OBFUSCATION_TRANSFORMS, normalize, segments, strip_diacritics, variants
from guard.screen.result import PromptVerdict
from guard.screen.static_embed import StaticEncoder, StaticUnavailable, get_static_encoder
from guard.screen.suspicion import Suspicion, SuspicionScorer

logger = logging.getLogger(__name__)

DECISIONS = ("allow", "escalate", "block")
_RANK = {d: i for i, d in enumerate(DECISIONS)}
#: learned decision: the suspicion at which gibberish that no head finds risky is escalated for its
#: form alone (one unknown word among three, e.g. "an eggplant, highly detailed", scores 0.4)
FORM_ONLY_SUSPICION = 0.5
#: learned decision: an exact key term of a blocking concept escalates a prompt its head scores at
#: least this high (below, the head has ruled the term's sense out: "a naked mole rat" scores 0.04)
LEXICAL_FLOOR_MIN = 0.1
#: ... and blocks it when the head gives it at least even odds: the term is unambiguous by the lexicon's
#: rule, and a head this sure of its category has not ruled its harmful sense out ("a sex doll": 0.82)
LEXICAL_BLOCK_MIN = 0.5
#: how views are embedded when packed (part of the cache keys; bump when that changes)
VIEWS_TAG = "packed1"
#: prompts longer than this many characters are refused outright by ``screen_batch``
HARD_MAX_PROMPT_CHARS = 1_000_000


def validate_prompts(prompts: Any) -> list[str]:
    """``prompts`` as a list of str, or :class:`GuardInputError` saying what is wrong and where.

    Only a list or tuple of strings is accepted: a ``dict`` would be screened by its keys, a ``set``
    in arbitrary order, and ``bytes`` iterate as ints, so none of them is taken as a batch."""
    if isinstance(prompts, str):
        raise GuardInputError("expected a list of prompts, got a single string")
    if not isinstance(prompts, (list, tuple)):
        raise GuardInputError(f"expected a list of prompts (str), got {type(prompts).__name__}")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise GuardInputError(f"prompt {i} must be a string, got {type(p).__name__}")
        if len(p) > HARD_MAX_PROMPT_CHARS:
            raise GuardInputError(
                f"prompt {i} is {len(p)} characters long; at most {HARD_MAX_PROMPT_CHARS} are accepted"
            )
    return list(prompts)


@dataclass
class ConceptScore:
    concept: str
    category: str
    action: str
    score: float
    threshold: float
    phrase: str
    view: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["score"] = round(self.score, 4)
        d["threshold"] = round(self.threshold, 4)
        return d


@dataclass
class ScreenResult(PromptVerdict):
    """The screen's verdict on one prompt."""

    transforms: list[str] = field(default_factory=list)
    matches: list[ConceptScore] = field(default_factory=list)  # concepts at or above escalation
    n_views: int = 1
    elapsed_ms: float = 0.0
    suspicion: float | None = None
    stage: str = "full"  # "fast": allowed early by the fast path's gate (the full screen did not run)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self._verdict_dict(),
            "transforms": list(self.transforms),
            "matches": [m.to_dict() for m in self.matches],
            "n_views": self.n_views,
            "suspicion": self.suspicion,
            "stage": self.stage,
            "elapsed_ms": round(self.elapsed_ms, 3),
        }


class PromptScreen:
    """Screens prompts against one policy's concepts. Thread-safe; build once, reuse."""

    def __init__(
        self, policy: Policy, embedder: Embedder | None = None, *, use_cache: bool = True, pack_views: bool = True
    ):
        self.policy = policy
        self.cfg = policy.screen
        self.embedder = embedder or get_embedder(self.cfg.model, backend=self.cfg.backend)
        self._concepts: list[Concept] = list(policy.concepts)
        #: indexes of the ``*.translations`` concepts (their key terms are evidence of another language)
        self._translation_concepts = {ci for ci, c in enumerate(self._concepts) if c.id.endswith(".translations")}
        self._phrases: list[str] = []
        self._phrase_concept: list[int] = []
        for ci, c in enumerate(self._concepts):
            for p in c.phrases:
                self._phrases.append(p)
                self._phrase_concept.append(ci)
        self._phrase_concept_arr = np.asarray(self._phrase_concept, dtype=np.int64)
        # phrases of one concept are contiguous: concept ci owns phrases [starts[ci], starts[ci+1])
        self._starts = np.searchsorted(self._phrase_concept_arr, np.arange(len(self._concepts) + 1))
        self._allow_phrase = np.asarray(
            [self._concepts[ci].action == "allow" and self._concepts[ci].contrast for ci in self._phrase_concept],
            dtype=bool,
        )
        self._thresholds = np.asarray([policy.threshold_for(c) for c in self._concepts], dtype=np.float32)
        self._concept_pos = {c.id: ci for ci, c in enumerate(self._concepts)}
        #: the phrase columns of each distinct ``unless_nearer`` list of the rules' conditions
        self._excuse_cols: dict[tuple[str, ...], np.ndarray] = {}
        for rule in policy.rules:
            for cond in rule.all_of:
                if cond.unless_nearer:
                    key = tuple(cond.unless_nearer)
                    owners = {self._concept_pos[c] for c in key}
                    self._excuse_cols[key] = np.flatnonzero(np.isin(self._phrase_concept_arr, list(owners)))
        self._lock = threading.Lock()
        t0 = time.perf_counter()
        #: all views of a prompt's text in one encoder call, packed side by side (False: one call per
        #: length-sorted batch of views, padded to its longest)
        self.pack_views = pack_views and hasattr(self.embedder, "encode_views")
        #: sub-views (segments, word windows, other de-obfuscated readings) by the static token encoder
        #: (``screen.view_encoder: static``); the whole de-obfuscated prompt keeps the sentence model
        self.static: StaticEncoder | None = None
        if getattr(self.cfg, "view_encoder", "minilm") == "static":
            try:
                self.static = get_static_encoder(self.embedder)
            except StaticUnavailable as e:
                logger.warning("screen.view_encoder static unavailable (%s); embedding every view with the model", e)
        self.index = self._build_index(use_cache)
        # the phrase rows as one float32 matrix: every view is scored against every phrase by a product
        self._phrase_mat = (
            self.index.reconstruct_n(0, self.index.ntotal) if self.index.ntotal else np.zeros((0, self.embedder.dim))
        ).astype(np.float32)
        dictionary = self._dictionary = _vocabulary(getattr(self.embedder, "path", None))
        self.lexical = (
            # key terms of the concepts that block or escalate, and of the signals rules read ("minors.named")
            LexicalMatcher(
                [c.terms if c.action != "allow" or c.role == "signal" else [] for c in self._concepts], dictionary
            )
            if self.cfg.lexical
            else None
        )
        sus = self.cfg.suspicion
        self.suspicion = (
            SuspicionScorer(self.embedder.path) if sus.enabled and getattr(self.embedder, "path", None) else None
        )
        self._setup_learned()
        #: the allow-only first stage (``screen.fast_path``; None: every prompt takes the full path)
        self.fast: FastPath | None = build_fast_path(self)
        self.build_ms = (time.perf_counter() - t0) * 1000

    def _setup_learned(self) -> None:
        """Load the learned decision when the policy asks for it (or, under ``auto``, when it has the
        concepts the model was trained with and the same sentence model)."""
        self.learned: LearnedModel | None = None
        self.multilingual: MultilingualSignals | None = None
        self._learned_concepts: set[int] = set()
        self._head_concepts: dict[str, list[int]] = {}
        self._operating_points: dict[str, OperatingPoint] = {}
        self._operating_points_ml: dict[str, OperatingPoint] = {}  # the non-English heads'
        mode = getattr(self.cfg, "decision", "auto")
        if mode == "threshold":
            return
        try:
            model = get_model()
        except GuardError:
            if mode == "learned":
                raise
            logger.warning("learned screen model unavailable; using the threshold decision", exc_info=True)
            return
        have = {c.id for c in self._concepts if c.action != "allow"}
        trained = set(model.layout.concepts)
        share = len(have & trained) / max(1, len(trained))
        same_model = (
            model.meta.get("trained", {}).get("embedder", "").split("-")[0]
            == str(self.embedder.cache_key).split("-")[0]
        )
        if mode == "auto" and (share < 0.8 or not same_model):
            logger.info(
                "learned screen off for policy %s: %.0f %% of its concepts, model %s",
                self.policy.name,
                100 * share,
                self.embedder.cache_key,
            )
            return
        if not same_model:
            raise GuardError(
                f"screen.decision: learned needs the screen model the decision was trained with "
                f"({model.meta['trained']['embedder']}), the policy uses {self.embedder.cache_key}"
            )
        self.learned = model
        if model.layout.multilingual:
            enc = multilingual_encoder(self.cfg, model.layout)  # (the model's; another is an error)
            self.multilingual = build_for(self, enc, fail_open=self.policy.fail_open)
        self._operating_points = model.operating_points(getattr(self.cfg, "sensitivity", "medium"))
        if model.has_ml and self.multilingual is not None:
            self._operating_points_ml = model.operating_points(getattr(self.cfg, "sensitivity", "medium"), "ml")
        self._learned_concepts = {ci for ci, c in enumerate(self._concepts) if c.id in trained}
        for ci in sorted(self._learned_concepts):
            self._head_concepts.setdefault(self._concepts[ci].category, []).append(ci)

    # ---------------------------------------------------------------- index

    @property
    def index_key(self) -> str:
        """Cache key: the phrases (normalised as the screen will see them), the model, and how views are
        embedded (the training feature cache is keyed by it too)."""
        h = hashlib.sha256()
        h.update(self.embedder.cache_key.encode())
        if self.pack_views:
            h.update(b"\x00views=" + VIEWS_TAG.encode())
        if self.static is not None:
            h.update(b"\x00static=" + self.static.fingerprint.encode())
        h.update(b"\x00normalize=" + str(self.cfg.normalize).encode())
        for p in self._phrases:
            h.update(b"\x00" + p.encode("utf-8"))
        return h.hexdigest()[:24]

    def _phrase_views(self) -> list[str]:
        return [normalize(p).text if self.cfg.normalize else p for p in self._phrases]

    def _build_index(self, use_cache: bool):
        import faiss

        dim = self.embedder.dim
        index = faiss.IndexFlatIP(dim)
        if not self._phrases:
            return index
        path = cache_dir() / "screen" / f"{self.index_key}.faiss"
        if use_cache and path.is_file():
            try:
                cached = faiss.read_index(str(path))
                if cached.ntotal == len(self._phrases) and cached.d == dim:
                    logger.debug("screen index loaded from cache %s", path)
                    return cached
            except Exception as e:  # corrupt cache: rebuild it
                logger.warning("ignoring unreadable screen index cache %s: %s", path, e)
        emb = self.embedder.encode(self._phrase_views())
        index.add(emb)
        if use_cache:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
                os.close(fd)
                faiss.write_index(index, tmp)
                os.replace(tmp, path)  # atomic: readers see the old file or the whole new one
            except OSError as e:
                logger.warning("could not cache the screen index at %s: %s", path, e)
        return index

    # ---------------------------------------------------------------- screening

    def screen(self, prompt: str) -> ScreenResult:
        return self.screen_batch([prompt])[0]

    def screen_batch(self, prompts: Sequence[str]) -> list[ScreenResult]:
        """Screen a list of prompts; every view of every prompt is encoded in one pass. With the fast
        path, a prompt its gate finds clearly benign is allowed without the sentence model; the others
        take the full path, side by side."""
        t0 = time.perf_counter()
        prompts = validate_prompts(prompts)
        with single_thread_blas():
            all_views = [self._views(p) for p in prompts]
            if self.fast is not None:
                early, gate_inputs = self.fast.decide_with_inputs(prompts, all_views)
            else:
                early = gate_inputs = [None] * len(prompts)
            rest = [i for i, e in enumerate(early) if e is None]
            scored = self._score_views(
                [prompts[i] for i in rest], [all_views[i] for i in rest], [gate_inputs[i] for i in rest]
            )
        proba = feats = None
        if self.learned is not None and scored:
            feats = featurize(self, self.learned.layout, scored, fill=self.learned.mean)
            proba = self.learned.proba(feats)
        elapsed_each = (time.perf_counter() - t0) * 1000 / max(1, len(prompts))
        out: list[ScreenResult] = [None] * len(prompts)  # type: ignore[list-item]
        for k, (i, sc) in enumerate(zip(rest, scored)):
            r = self._decide(i, sc, None if proba is None else proba[k], None if feats is None else feats[k])
            r.elapsed_ms = elapsed_each
            out[i] = r
        for i, e in enumerate(early):
            if e is not None:
                out[i] = self._early_result(i, all_views[i], *e)
                out[i].elapsed_ms = elapsed_each
        return out

    def _early_result(self, index: int, views: tuple, logit: float, suspicion: float | None) -> ScreenResult:
        """The verdict on a prompt the fast path allowed early: the stage, gate score and threshold in words."""
        assert self.fast is not None
        gate = self.fast.gate
        reasons = [self.fast.reason(logit)]
        if views[3]:
            reasons.append("normalised: " + ", ".join(views[3]))
        return ScreenResult(
            index=index,
            decision="allow",
            category=None,
            concept="fast_path",
            phrase=None,
            score=fast_sigmoid(logit),
            threshold=gate.threshold_proba,
            reasons=reasons,
            transforms=list(views[3]),
            n_views=len(views[0]),
            suspicion=None if suspicion is None else round(suspicion, 3),
            stage="fast",
        )

    @property
    def concept_ids(self) -> list[str]:
        return [c.id for c in self._concepts]

    def concept_scores(self, prompts: Sequence[str]) -> np.ndarray:
        """(n_prompts, n_concepts) best similarity of each prompt (any view) to each concept; for
        calibration and evaluation. Empty prompts score -1."""
        rows = [sc.scores for sc in self._score(prompts)]
        return np.stack(rows) if rows else np.zeros((0, len(self._concepts)), np.float32)

    def _views(self, prompt: str) -> tuple[list[str], list[str], list[str], list[str], list[tuple]]:
        """(views, view kinds, de-obfuscated full texts, transforms, sources). Views are every distinct
        de-obfuscated variant of the prompt and, for each, its segments and word windows; the source of
        a view is ``(variant index, (start, end) or None)``: the whole variant, or a character span of it."""
        tr: list[str] = []
        if len(prompt) > self.cfg.max_prompt_chars:
            prompt = prompt[: self.cfg.max_prompt_chars]
            tr.append("truncated")
        if self.cfg.normalize:
            n = normalize(prompt)
            tr.extend(n.transforms)
            lex = self.lexical
            variant_list, fired = variants(n.text, lex and lex.words, lex and lex.dictionary) if n.text else ([], [])
            tr.extend(fired)
        else:
            text = " ".join(prompt.split())
            variant_list = [("plain", text)] if text else []
        views: list[str] = []
        kinds: list[str] = []
        sources: list[tuple] = []
        seen: set[str] = set()
        for vi, (name, text) in enumerate(variant_list):
            for k, span in [(name, None)] + (
                [(f"{name}+segment", sp) for sp in segments(text, spans=True)] if self.cfg.segments else []
            ):
                v = text if span is None else text[span[0] : span[1]]
                if v not in seen:
                    seen.add(v)
                    views.append(v)
                    kinds.append(k)
                    sources.append((vi, span))
        return views, kinds, [t for _, t in variant_list], tr, sources

    def _embed_views(self, all_views: list[tuple]) -> np.ndarray:
        """(n_views, dim) rows of every view of every prompt, in order. With the static view encoder:
        the first view of each prompt (its whole de-obfuscated text) by the sentence model, every other
        view from the static token rows of its text (prefix sums; see :meth:`_static_rows`). Else packed
        (the default): one encoder call per distinct de-obfuscated text, carrying it and its segments
        side by side, each encoded as if alone (``encode_views``); or the views in padded batches."""
        flat_n = sum(len(vs) for vs, *_ in all_views)
        if not flat_n:
            return np.zeros((0, self.embedder.dim), np.float32)
        if self.static is not None:
            out = np.empty((flat_n, self.embedder.dim), np.float32)
            model_rows: list[list[int]] = []
            row = 0
            for vs, _kinds, texts, _tr, sources in all_views:
                if not vs:
                    continue
                keep = _model_views(vs, sources)
                model_rows.append([row + k for k in keep])
                by_text: dict[int, list[int]] = {}  # variant index -> its statically embedded views
                for k, (vi, _span) in enumerate(sources):
                    if k not in keep:
                        by_text.setdefault(vi, []).append(k)
                for vi, ks in by_text.items():
                    out[[row + k for k in ks]] = self.static.encode_spans(texts[vi], [sources[k][1] for k in ks])
                row += len(vs)
            live = [av for av in all_views if av[0]]
            if hasattr(self.embedder, "encode_views"):  # the text and its one-word segments in one call
                got = self.embedder.encode_views(
                    [av[2][0] for av in live], [[av[4][k][1] for k in _model_views(av[0], av[4])[1:]] for av in live]
                )
            else:
                got = [self.embedder.encode([av[0][k] for k in _model_views(av[0], av[4])]) for av in live]
            for rows, g in zip(model_rows, got):
                out[rows] = g
            return out
        if not self.pack_views:
            return self.embedder.encode([v for vs, *_ in all_views for v in vs])
        want: dict[str, dict[tuple[int, int], int]] = {}  # text -> its spans, in first-seen order
        where: list[tuple[str, int]] = []
        for _vs, _kinds, texts, _tr, sources in all_views:
            for vi, span in sources:
                spans = want.setdefault(texts[vi], {})
                if span is None:
                    where.append((texts[vi], 0))
                else:
                    where.append((texts[vi], 1 + spans.setdefault(span, len(spans))))
        order = list(want)
        got = dict(zip(order, self.embedder.encode_views(order, [list(want[t]) for t in order])))
        return np.stack([got[t][r] for t, r in where]).astype(np.float32, copy=False)

    def _static_rows(self, all_views: list[tuple]) -> np.ndarray | None:
        """Which rows of :meth:`_embed_views` are static vectors (None: none are)."""
        if self.static is None:
            return None
        mask = np.ones(sum(len(vs) for vs, *_ in all_views), dtype=bool)
        row = 0
        for vs, _kinds, _texts, _tr, sources in all_views:
            if vs:
                mask[[row + k for k in _model_views(vs, sources)]] = False
            row += len(vs)
        return mask

    def _score(self, prompts: Sequence[str]) -> list[_Scored]:
        prompts = validate_prompts(prompts)
        with single_thread_blas():  # small products: threads would only wait for each other
            return self._score_views(prompts)

    def _score_views(
        self, prompts: list[str], all_views: list[tuple] | None = None, pre: list | None = None
    ) -> list[_Scored]:
        """Scores of each prompt (its views given, or computed); ``pre``: per prompt the fast path's
        ``GateInput`` or None, whose lexical hits and suspicion (the same calls) are taken as they are."""
        if all_views is None:
            all_views = [self._views(p) for p in prompts]
        emb = self._embed_views(all_views)
        sims = self._similarities(emb, self._static_rows(all_views))
        out = []
        row = 0
        per_concept = self._best_by_concept(sims, [(vs, kinds) for vs, kinds, *_ in all_views])
        pre = pre if pre is not None else [None] * len(prompts)
        for p, (vs, _kinds, texts, tr, _src), (scores, phrase_idx, view_kind, contrast), g in zip(
            prompts, all_views, per_concept, pre
        ):
            row += len(vs)
            sc = _Scored(len(vs), tr, scores, phrase_idx, view_kind, contrast)
            sc.prompt = p
            if self._excuse_cols and len(vs):
                sc.excuses = self._rule_excuses(sims[row - len(vs) : row], phrase_idx)
            if len(vs):
                sc.embedding = emb[row - len(vs)]  # the de-obfuscated full text: the first view
            if self.lexical is not None and texts:
                sc.lexical = g.lexical if g is not None and g.lexical is not None else self.lexical.match(texts)
            if self.suspicion is not None and vs:
                sc.suspicion = (
                    g.suspicion_of
                    if g is not None and g.suspicion_of is not None
                    else self.suspicion.score(p[: self.cfg.max_prompt_chars])
                )
                sc.clean_text = strip_diacritics(texts[0])[0] if texts else ""
                sc.natural_language = bool(texts) and reads_as_language(texts[0])
            out.append(sc)
        if self.multilingual is not None:
            foreign = [
                i
                for i, (sc, (_, _, texts, _, _)) in enumerate(zip(out, all_views))
                if self._routes_multilingual(texts, sc.lexical)
            ]
            if foreign:
                sig = self.multilingual.signals([all_views[i][2][0] for i in foreign])
                for k, i in enumerate(foreign):
                    out[i].multilingual = sig[k]
        return out

    def _rule_excuses(self, sims: np.ndarray, phrase_idx: np.ndarray) -> dict[tuple[str, ...], np.ndarray]:
        """Per ``unless_nearer`` list of the rules: for each concept, the best similarity of the view
        that matched the concept (``sims``: one prompt's rows; the first view reaching its best phrase)
        to any phrase of the listed concepts."""
        bv = sims[:, phrase_idx].argmax(axis=0)
        return {key: sims[:, cols].max(axis=1)[bv] for key, cols in self._excuse_cols.items()}

    def _routes_multilingual(self, texts: Sequence[str], lexical) -> bool:
        """Whether a prompt of de-obfuscated ``texts`` and ``lexical`` hits goes to the multilingual
        encoder: it reads as not English, or a key term of a ``*.translations`` concept matched."""
        translated = bool(lexical) and not self._translation_concepts.isdisjoint(lexical)
        return bool(texts) and reads_multilingual(texts[0], self._dictionary, translated)

    def reads_multilingual(self, prompt: str) -> bool:
        """Whether the full path sends ``prompt`` to the multilingual encoder (and its non-English
        heads): the routing of :meth:`_score_views`, without the sentence model."""
        if self.multilingual is None:
            return False
        texts = self._views(prompt)[2]
        lexical = self.lexical.match(texts) if self.lexical is not None and texts else None
        return self._routes_multilingual(texts, lexical)

    def _similarities(self, emb: np.ndarray, is_static: np.ndarray | None = None) -> np.ndarray:
        """(n_views, n_phrases) cosine similarities: one matrix product with the unit phrase rows
        (every phrase is scored, so a k-nearest search over all of them would only add a sort). Rows
        of static vectors are put on the sentence model's cosine scale (``StaticEncoder.calibrate``)."""
        if emb.shape[0] == 0 or not len(self._phrase_mat):
            return np.zeros((emb.shape[0], len(self._phrase_mat)), dtype=np.float32)
        sims = np.ascontiguousarray(emb, dtype=np.float32) @ self._phrase_mat.T
        if is_static is not None and self.static is not None:
            rows = is_static & emb.any(axis=1)  # a view with no known token stays similar to nothing
            if rows.any():
                sims[rows] = self.static.calibrate(sims[rows])
        return sims

    def nearest_phrases(self, text: str, k: int = 5) -> list[tuple[str, str, float]]:
        """The ``k`` phrases nearest ``text`` (normalised, whole), as (concept id, phrase, cosine):
        a FAISS neighbour search, for explanations."""
        if not self._phrases:
            return []
        v = self.embedder.encode([normalize(text).text if self.cfg.normalize else text])
        with self._lock:
            scores, ids = self.index.search(np.ascontiguousarray(v, dtype=np.float32), min(k, self.index.ntotal))
        return [
            (self._concepts[self._phrase_concept[int(i)]].id, self._phrases[int(i)], float(sc))
            for sc, i in zip(scores[0], ids[0])
            if i >= 0
        ]

    def _best_by_concept(self, sims: np.ndarray, views: list[tuple[list[str], list[str]]]) -> list[tuple]:
        """Per prompt (its views and their kinds, in ``sims`` row order): for each concept the best
        similarity of any view to any of its phrases, that phrase, the kind of that view ("+word" for a
        one-word segment) and the view's best benign-contrast similarity (the same view as the match it
        may excuse); ties go to the first phrase and the first view. A prompt without views scores -1.

        Numpy reductions: the best view per phrase is a max over each prompt's rows, the best phrase
        per concept one ``maximum.reduceat`` over each concept's phrases for the whole batch (they are
        contiguous), the first best by a ``minimum.reduceat`` of the positions that reach it."""
        n_c = len(self._concepts)
        n_p = sims.shape[1]
        counts = [len(vs) for vs, _ in views]
        out: list[tuple] = []
        live = [i for i, k in enumerate(counts) if k]
        if not live or not n_p:
            return [_unscored(n_c) for _ in views]
        offsets = [0, *itertools.accumulate(counts)]
        # (n_live, n_phrases): best over each prompt's views (a max per prompt: numpy's reduceat along
        # the first axis is a hundred times slower)
        best = (
            np.stack([sims[offsets[i] : offsets[i + 1]].max(axis=0) for i in live])
            if len(live) > 1
            else sims[offsets[live[0]] : offsets[live[0] + 1]].max(axis=0)[None]
        )
        lo = self._starts[:-1]
        seg_max = np.maximum.reduceat(best, lo, axis=1)  # (every concept has at least one phrase)
        at_max = best == seg_max[:, self._phrase_concept_arr]
        positions = self.__dict__.get("_phrase_positions")
        if positions is None or len(positions) != n_p:
            positions = self._phrase_positions = np.arange(n_p)
        pi = np.minimum.reduceat(np.where(at_max, positions, n_p), lo, axis=1)
        if (pi >= n_p).any():  # NaN similarities: the first position argmax reports, as per concept
            for j, c in zip(*np.nonzero(pi >= n_p)):
                pi[j, c] = lo[c] + int(best[j, lo[c] : self._starts[c + 1]].argmax())
        scores = np.take_along_axis(best, pi, axis=1).astype(np.float32, copy=False)
        # best benign-contrast similarity of each view
        allow_cols = np.flatnonzero(self._allow_phrase)
        benign = sims[:, allow_cols].max(axis=1) if len(allow_cols) else None
        live_at = dict(zip(live, range(len(live))))
        for i, (vs, kinds) in enumerate(views):
            j = live_at.get(i)
            if j is None:
                out.append(_unscored(n_c))
                continue
            a, b = int(offsets[i]), int(offsets[i + 1])
            bv = sims[a:b, pi[j]].argmax(axis=0)  # the first view reaching each concept's best phrase
            vk = [k + ("+word" if k.endswith("segment") and " " not in v else "") for v, k in zip(vs, kinds)]
            contrast = benign[a:b][bv] if benign is not None else np.full(n_c, -1.0, np.float32)
            out.append((scores[j], pi[j], [vk[x] for x in bv.tolist()], contrast))
        return out

    # ---------------------------------------------------------------- decision

    def _decide(
        self, index: int, sc: _Scored, proba: np.ndarray | None = None, feats: np.ndarray | None = None
    ) -> ScreenResult:
        """One prompt's verdict: per-concept decisions (learned heads for the built-in categories when
        the learned decision is on, similarity thresholds for the rest), co-occurrence rules, the
        optimised-prompt check, then the reasons, deciding signal first."""
        if sc.n_views == 0:
            return ScreenResult(
                index,
                "allow",
                None,
                None,
                None,
                0.0,
                None,
                reasons=["empty prompt"],
                transforms=sc.transforms,
                n_views=0,
            )
        if not self._concepts:
            return ScreenResult(
                index,
                "allow",
                None,
                None,
                None,
                0.0,
                None,
                reasons=["policy has no concepts"],
                transforms=sc.transforms,
                n_views=sc.n_views,
            )
        v = _Verdict()
        self._threshold_decisions(sc, v)
        if self.learned is not None and proba is not None:
            self._learned_decisions(sc, proba, feats, v)
        self._apply_rules(sc, v)
        self._apply_suspicion(sc, v)
        return self._result(index, sc, v)

    def _threshold_decisions(self, sc: _Scored, v: _Verdict) -> None:
        """Zero-shot decisions: each concept's best similarity against its threshold, the escalation
        band, the benign contrast, the lexical layer and obfuscation. Concepts the learned model
        decides are left to their category's learned head (nothing of theirs is decided here), and a
        concept's report entry is built only when it is a match, the top or the nearest."""
        cfg = self.cfg
        margin = cfg.escalate_margin
        cmargin = cfg.contrast_margin
        transforms = sc.transforms
        obfuscated = [t for t in transforms if t in OBFUSCATION_TRANSFORMS]
        top_key = (-2, -np.inf)
        learned = self._learned_concepts
        scores = sc.scores.tolist()  # (Python floats: the comparisons below are in float64)
        thresholds = self._thresholds.tolist()
        lexical = sc.lexical
        for ci, c in enumerate(self._concepts):
            if ci in learned:
                continue  # reported through its category's learned head
            s = scores[ci]
            thr = thresholds[ci]
            action = c.action
            kind = sc.view_kind[ci]
            hit = lexical.get(ci) if lexical else None
            if action == "allow":
                d = "allow"
            elif s >= thr:
                d = action
            elif s >= thr - margin:
                d = "escalate"
            else:
                d = "allow"
            # the same text is clearly nearer a benign look-alike ("a police officer on a horse"):
            # one level down. Only the view that matched counts, so appending a benign phrase elsewhere
            # in the prompt excuses nothing. (float32 against the sum, as numpy compares them)
            if d != "allow" and hit is None and cmargin is not None and sc.contrast[ci] >= s + cmargin:
                d = "escalate" if d == "block" else "allow"
                v.notes.append(f"{c.id} {s:.3f} lowered: nearer a benign phrase ({sc.contrast[ci]:.3f})")
            # lexical layer: an exact key term applies the concept's action; a misspelt one escalates,
            # or applies the action when the sentence embedding agrees (within twice the margin)
            if hit is not None and action != "allow":
                lex = action if (hit.exact or s >= thr - 2 * margin) else "escalate"
                if _RANK[lex] > _RANK[d]:
                    d = lex
            # a one-word segment is thin evidence: it may escalate, never block on its own
            if d == "block" and hit is None and kind.endswith("+word"):
                d = "escalate"
                v.notes.append(f"{c.id}: a one-word segment matched; escalated, not blocked")
            # obfuscation is itself a signal: a match that needed de-obfuscating goes up
            if (
                d != "allow"
                and obfuscated
                and cfg.obfuscation_action != "none"
                and (
                    kind.split("+")[0] != "plain"
                    or hit is not None
                    or any(t in transforms for t in ("invisible_chars", "styled_letters"))
                )
            ):
                if _RANK[cfg.obfuscation_action] > _RANK[d]:
                    v.notes.append(f"{c.id}: raised to {cfg.obfuscation_action}, obfuscated ({', '.join(obfuscated)})")
                    d = cfg.obfuscation_action
            matched = d != "allow" or (action == "allow" and s >= thr)
            key = (_RANK[d] if action != "allow" else -1, s - thr if hit is None else 1.0)
            is_top = key > top_key
            is_nearest = v.nearest is None or (action != "allow" and s - thr > v.nearest.score - v.nearest.threshold)
            if _RANK[d] > _RANK[v.decision]:
                v.decision = d
            if not (matched or is_top or is_nearest):
                continue
            if hit is not None and action != "allow":
                phrase = f"term {hit.term!r}" + ("" if hit.exact else f" (as {hit.found!r})")
                view = "lexical"
            else:
                phrase = self._phrases[int(sc.phrase_idx[ci])]
                view = "segment" if "segment" in kind else "full"
            cs = ConceptScore(c.id, c.category, action, s, thr, phrase, view)
            if matched:
                v.matches.append(cs)
            if is_top:
                top_key, v.top = key, cs
            if is_nearest:
                v.nearest = cs

    def _learned_decisions(self, sc: _Scored, proba: np.ndarray, feats: np.ndarray | None, v: _Verdict) -> None:
        """The learned head of each built-in category against its calibrated operating point."""
        model = self.learned
        assert model is not None
        v.feats = feats
        obfuscated = [t for t in sc.transforms if t in OBFUSCATION_TRANSFORMS]
        best_key: tuple | None = None
        best_cs: ConceptScore | None = None
        near_margin = -np.inf
        context_note = ""
        # a prompt the multilingual encoder read is scored by the non-English heads, at their own points
        ml = feats is not None and bool(self._operating_points_ml) and bool(model.variant_of(feats)[0])
        points = self._operating_points_ml if ml else self._operating_points
        scores = sc.scores.tolist()
        lexical = sc.lexical
        logits = _logits(proba)
        # (a prompt in another language is full of word pieces unknown to the English model: no soup)
        soup = model.soup_without_fragment(feats)[0].tolist() if feats is not None and not sc.natural_language else []
        for h, p in enumerate(proba.tolist()):
            cat = model.heads[h]
            op = points[cat]
            d = "block" if p >= op.block else "escalate" if p >= op.escalate else "allow"
            # pure gibberish (no key term of the category) is escalated unless the head is all but sure
            if d == "block" and soup and soup[h] and p < SOUP_BLOCK_MIN:
                d = "escalate"
                v.notes.append(f"{cat}: escalated, not blocked: gibberish with no key term of {cat} ({p:.2f})")
            idx = self._head_concepts.get(cat, [])
            if not idx:
                continue
            # the concept that best explains the head: a key-term hit first, else the nearest phrase
            # (the first of equals)
            if lexical and any(ci in lexical for ci in idx):
                best = None
                for ci in idx:
                    hit = lexical.get(ci)
                    k = (hit is not None and hit.exact, hit is not None, scores[ci])
                    if best is None or k > best[0]:
                        best = (k, ci, hit)
                _, ci, hit = best
            else:
                ci, hit = max(idx, key=scores.__getitem__), None
            c = self._concepts[ci]
            phrase = (
                (f"term {hit.term!r}" + ("" if hit.exact else f" (as {hit.found!r})"))
                if hit
                else self._phrases[int(sc.phrase_idx[ci])]
            )
            # the lexical layer stays a second signal: an exact key term of a blocking concept escalates
            # at least, and blocks when the head agrees (at its escalation point)
            if hit is not None and hit.exact and c.action == "block" and self.cfg.lexical:
                if d == "allow" and p >= LEXICAL_BLOCK_MIN:
                    d = "block"
                    v.notes.append(f"{cat}: raised to block, key term {hit.term!r} and a learned score of {p:.2f}")
                elif d == "allow" and p >= LEXICAL_FLOOR_MIN:  # the head has not ruled it out ("naked mole rat")
                    d = "escalate"
                    v.notes.append(f"{cat}: escalated, key term {hit.term!r} although the learned score is low")
                elif d == "escalate":
                    d = "block"
                    v.notes.append(f"{cat}: raised to block, key term {hit.term!r} and the learned score agree")
            # obfuscation is evidence only together with risk: an escalated head whose key term (of a
            # blocking concept: an escalate-only cue such as a painter's name stays a cue) was found only
            # after undoing the obfuscation goes up
            if (
                d == "escalate"
                and obfuscated
                and hit is not None
                and c.action == "block"
                and self.cfg.obfuscation_action == "block"
            ):
                d = "block"
                v.notes.append(f"{cat}: raised to block, key term found after undoing {', '.join(obfuscated)}")
            # a nude-prone art context (a painter of the nude and a figure, nothing clothing it) escalates,
            # never blocks, a prompt the sexual head has not ruled out (guard/screen/nude_context.py); it
            # comes after the obfuscation rule, so that "b0uguereau" is not raised to block by it
            if d == "allow" and cat == "sexual" and p >= nude_context.MIN_SCORE:
                ctx = nude_context.find(sc.clean_text or normalize(sc.prompt).text, self._dictionary)
                if ctx is not None:
                    d = "escalate"
                    context_note = f"sexual: escalated, {ctx.describe()} (learned score {p:.2f})"
                    v.notes.append(context_note)
            cs = ConceptScore(c.id, cat, d if d != "allow" else c.action, p, op.block, phrase, "learned")
            v.learned[cat] = (cs, d, op)  # (its deciding signals are computed when the report shows them)
            lp = logits[h]
            if d != "allow":
                v.matches.append(cs)
                key = (_RANK[d], lp - _point_logit(op.block))  # margins compare in logit space
                if best_key is None or key > best_key:
                    best_key, best_cs = key, cs
            margin = lp - _point_logit(op.escalate)
            if v.nearest is None or v.nearest.view != "learned" or margin > near_margin:
                v.nearest, near_margin = cs, margin
        if best_key is not None and best_key[0] >= _RANK[v.decision]:
            v.decision = DECISIONS[best_key[0]]
            v.top = best_cs
            if context_note and v.decision == "escalate" and best_cs is not None and best_cs.category == "sexual":
                v.leading = context_note  # what decided comes first in the reasons

    def _apply_rules(self, sc: _Scored, v: _Verdict) -> None:
        """Co-occurrence rules: each condition alone may be under threshold."""
        cmargin = self.cfg.contrast_margin
        for rule in self.policy.rules:
            if _RANK[rule.action] <= _RANK[v.decision]:
                continue
            ok = True
            best_parts = []
            for cond in rule.all_of:
                idx = (
                    [self._concept_pos[c] for c in cond.concept_ids]
                    if cond.category is None
                    else self._category_concepts(cond.category)
                )
                # a key term counts 1; a similarity counts unless its view is nearer a benign look-alike by
                # the contrast margin, as for a concept's own threshold (with a look-alike "a renaissance
                # painting", the segment "renaissance painting" is 0.98 to it and 0.83 to "renaissance nude
                # painting": no evidence for a rule; see tests/test_screen_probes_r9.py)
                # unless_nearer: the condition's own look-alikes (phrases that change nothing outside the
                # rule: "renaissance painting" beside a child) excuse a view at least as near them as to the
                # matched phrase, with no margin: "digital painting" is 0.70 to "a victorian painting" and
                # 0.62 to a phrase of sexual, and beside "a 5 year old girl" it is no evidence of either
                excuse = sc.excuses.get(tuple(cond.unless_nearer)) if cond.unless_nearer else None
                vals = []
                excused: tuple[float, int] | None = None  # the best similarity an unless_nearer phrase excused
                for ci in idx:
                    s = float(sc.scores[ci])
                    if sc.lexical and ci in sc.lexical:
                        s = 1.0
                    elif cmargin is not None and float(sc.contrast[ci]) >= s + cmargin:
                        s = -1.0
                    elif excuse is not None and float(excuse[ci]) >= s:
                        if excused is None or s > excused[0]:
                            excused = (s, ci)
                        s = -1.0
                    vals.append(s)
                val = max(vals) if vals else -1.0
                if excused is not None and excused[0] >= cond.min_score > val:
                    s, ci = excused
                    v.notes.append(
                        f"{self._concepts[ci].id} {s:.2f} is no part of rule {rule.id}: nearer a look-alike of "
                        f"{'|'.join(cond.unless_nearer or ())} ({float(excuse[ci]):.2f})"
                    )
                name = cond.label
                if cond.concepts is not None and vals:  # several concepts: the one that counted
                    name = self._concepts[idx[int(np.argmax(vals))]].id
                # a category the learned head has ruled out (as for a key term) is no part of a rule: the
                # cosine of "a girl in a school uniform" to "sexy schoolgirl costume" is 0.63, its head 0.01
                learned = v.learned.get(cond.category) if cond.category else None
                if learned is not None and learned[0].score < LEXICAL_FLOOR_MIN:
                    val = min(val, learned[0].score)
                best_parts.append(f"{name} {val:.2f}>={cond.min_score:.2f}")
                if val < cond.min_score:
                    ok = False
                    break
            if ok:
                v.decision = rule.action
                top = v.top or v.nearest
                assert top is not None
                v.notes.insert(0, f"rule {rule.id}: " + " and ".join(best_parts))
                v.top = ConceptScore(rule.id, top.category, rule.action, top.score, top.threshold, top.phrase, "rule")
                v.matches.insert(0, v.top)
                v.leading = v.notes[0]

    def _category_concepts(self, category: str) -> list[int]:
        """The blocking and escalating concepts of a category (remembered per category)."""
        memo = self.__dict__.setdefault("_by_category", {})
        got = memo.get(category)
        if got is None:
            got = memo[category] = [
                ci for ci, c in enumerate(self._concepts) if c.category == category and c.action != "allow"
            ]
        return got

    def _apply_suspicion(self, sc: _Scored, v: _Verdict) -> None:
        """Optimised-prompt suspicion. Threshold decision: gibberish near any concept is acted on.
        Learned decision: the heads already weigh suspicion with each category's evidence; gibberish
        they leave allowed is escalated, never blocked, for its form alone."""
        sus = sc.suspicion
        scfg = self.cfg.suspicion
        if sus is None or sus.score < scfg.threshold:
            return
        signals = "; ".join(sus.signals)
        if self.learned is not None and v.decision == "allow":
            # the form alone: judged on the de-obfuscated text, so that invisible characters or combining
            # marks in a benign prompt are no gibberish (obfuscation counts only together with risk)
            assert self.suspicion is not None
            clean = self.suspicion.score(sc.clean_text)
            # a prompt in another language is full of word pieces unknown to the English model ("een
            # moskee bij zonsondergang"): that is no optimised prompt's form
            if clean.score < max(scfg.threshold, FORM_ONLY_SUSPICION) or sc.natural_language:
                return
            signals = "; ".join(clean.signals)
            v.decision = "escalate"
            v.leading = f"suspected optimised prompt ({clean.score:.2f}: {signals}); no category scores high"
            v.notes.insert(0, v.leading)
            return
        if _RANK[scfg.action] <= _RANK[v.decision]:
            return
        near = [
            ci
            for ci, c in enumerate(self._concepts)
            if c.action != "allow"
            and ci not in self._learned_concepts
            and sc.scores[ci] >= self._thresholds[ci] - scfg.margin
        ]
        if near:
            ci = max(near, key=lambda k: sc.scores[k] - self._thresholds[k])
            v.decision = scfg.action
            c = self._concepts[ci]
            v.top = ConceptScore(
                c.id,
                c.category,
                c.action,
                float(sc.scores[ci]),
                float(self._thresholds[ci]),
                self._phrases[int(sc.phrase_idx[ci])],
                "suspicion",
            )
            v.leading = f"suspected optimised prompt ({sus.score:.2f}: {signals}) near {c.id} ({sc.scores[ci]:.3f})"
            v.notes.insert(0, v.leading)

    def _result(self, index: int, sc: _Scored, v: _Verdict) -> ScreenResult:
        """The ScreenResult with reasons in words, the deciding signal first."""
        top = v.nearest if (v.decision == "allow" and self.learned is not None) else (v.top or v.nearest)
        assert top is not None
        # matches: what decided first (same decision as the verdict), then by margin over threshold
        v.matches.sort(key=lambda m: (m.view == "rule", m is top, m.score - m.threshold), reverse=True)
        reasons: list[str] = []
        if v.leading:
            reasons.append(v.leading)
        for m in v.matches[:3]:
            if m.view == "rule":
                continue
            if m.view == "learned":
                _cs, d, op = v.learned[m.category]
                signals = self._signals(v, m.category, d)
                words = ", ".join(f"{name} ({val:+.2f})" for name, val in signals if val > 0)
                # deciding signals first (the CLI table shows the start of the first reason)
                reasons.append(
                    f"{m.category}: learned score {m.score:.3f} -> {d}"
                    + (f"; deciding signals: {words}" if words else "")
                    + f"; nearest concept {m.concept} ({m.phrase})"
                    + f"; {op.describe()}, sensitivity {self._sensitivity_of(m.category)}"
                )
                continue
            if m.view == "lexical":
                reasons.append(f"{m.concept} ({m.category}): {m.phrase} found")
                continue
            rel = ">=" if m.score >= m.threshold else "within margin of"
            reasons.append(
                f"{m.concept} ({m.category}): {m.score:.3f} {rel} {m.threshold:.3f}, nearest {m.phrase!r}"
                + (" in a segment" if m.view == "segment" else "")
            )
        if v.decision == "allow" and not any(m.action != "allow" for m in v.matches):
            if top.view == "learned":
                op = v.learned[top.category][2]
                reasons.insert(
                    0,
                    f"no category at its operating point (highest {top.category}: learned score "
                    f"{top.score:.3f} < {op.escalate:.3f} to escalate)",
                )
            else:
                reasons.insert(
                    0, f"no concept at threshold (nearest {top.concept}: {top.score:.3f} < {top.threshold:.3f})"
                )
        reasons.extend(n for n in v.notes if n != v.leading and not n.startswith("rule "))
        if sc.transforms:
            reasons.append("normalised: " + ", ".join(sc.transforms))
        sus = sc.suspicion
        return ScreenResult(
            index=index,
            decision=v.decision,
            category=top.category,
            concept=top.concept,
            phrase=top.phrase,
            score=top.score,
            threshold=top.threshold,
            reasons=reasons,
            transforms=sc.transforms,
            matches=v.matches,
            n_views=sc.n_views,
            suspicion=None if sus is None else round(sus.score, 3),
        )

    def _signals(self, v: _Verdict, category: str, decision: str) -> list[tuple[str, float]]:
        """The top contributing signals of a category's learned head (for the report's reasons)."""
        if v.feats is None or decision == "allow" or self.learned is None:
            return []
        out = self.learned.contributions(v.feats, category, top=3)
        if self.learned.neighbours is not None:  # the neighbours in numbers: their weighted vote and the nearest
            col = self.learned.column_of
            words = GROUP_WORDS["neighbours"]
            share, nearest = (float(v.feats[col[f"nb:{k}:{category}"]]) for k in ("frac", "pos"))
            said = f"{words} ({share:.0%} {category}, the nearest {category} one at cosine {nearest:.2f})"
            out = [(said if name == words else name, val) for name, val in out]
        return out

    def _sensitivity_of(self, category: str) -> str:
        sens = self.cfg.sensitivity
        if isinstance(sens, dict):
            sens = sens.get(category, sens.get("default", "medium"))
        return str(sens)


def _unscored(n_c: int) -> tuple:
    """Per-concept scores of a prompt without views: (scores, phrase index, view kind, contrast)."""
    return np.full(n_c, -1.0, np.float32), np.zeros(n_c, np.int64), ["plain"] * n_c, np.full(n_c, -1.0, np.float32)


def _model_views(views: list[str], sources: list[tuple]) -> list[int]:
    """Under the static view encoder, the views the sentence model still embeds: the whole
    de-obfuscated text (the first view) and its one-word segments, packed with it in one call. A
    single word is where a token average is furthest from the model (an artist's name of four word
    pieces, "bouguereau", is not near the phrase "bouguereau") and where the model is cheapest (about
    4 tokens: +15 % over the whole text on I2P prompts, against +110 % for every view)."""
    return [0] + [k for k in range(1, len(views)) if sources[k][0] == 0 and " " not in views[k]]


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return float(np.log(p / (1 - p)))


def _logits(p: np.ndarray) -> list[float]:
    """``_logit`` of each probability, in one numpy pass (the same float64 operations)."""
    q = np.minimum(np.maximum(np.asarray(p, np.float64), 1e-7), 1 - 1e-7)
    return np.log(q / (1 - q)).tolist()


#: the logit of an operating point (a handful per policy, needed for every prompt), remembered
_point_logit = functools.lru_cache(maxsize=256)(_logit)


@dataclass
class _Verdict:
    """The decision under construction for one prompt."""

    decision: str = "allow"
    top: ConceptScore | None = None  # what decided (or would, for an allowed prompt)
    nearest: ConceptScore | None = None  # closest to its line when nothing matched
    matches: list[ConceptScore] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    leading: str | None = None  # a rule or suspicion note that decided, shown first
    learned: dict[str, tuple] = field(default_factory=dict)  # category -> (score, decision, op)
    feats: np.ndarray | None = None  # the learned decision's feature row (for the deciding signals)


@dataclass
class _Scored:
    n_views: int
    transforms: list[str]
    scores: np.ndarray
    phrase_idx: np.ndarray
    view_kind: list[str]
    contrast: np.ndarray
    lexical: dict = field(default_factory=dict)
    suspicion: Suspicion | None = None
    embedding: np.ndarray | None = None
    prompt: str = ""
    clean_text: str = ""  # de-obfuscated full text without diacritics (for the suspicion of form alone)
    natural_language: bool = False  # the de-obfuscated text reads as another natural language
    multilingual: np.ndarray | None = None  # per-category USE-m3 cosines (non-English prompts only)
    #: per ``unless_nearer`` list of the rules, each concept's matched view's best similarity to it
    excuses: dict = field(default_factory=dict)


_VOCABS: dict[str, set[str]] = {}


def _vocabulary(model_dir) -> set[str]:
    """Whole words of the screen model's WordPiece vocabulary (a dictionary for the lexical layer)."""
    if model_dir is None:
        return set()
    key = str(model_dir)
    if key not in _VOCABS:
        f = Path(model_dir) / "vocab.txt"
        _VOCABS[key] = (
            {w for w in f.read_text(encoding="utf-8").splitlines() if w.isalpha() and not w.startswith("##")}
            if f.is_file()
            else set()
        )
    return _VOCABS[key]


_SCREENS: dict[str, PromptScreen] = {}
_SCREENS_LOCK = threading.Lock()


def get_screen(policy: Policy) -> PromptScreen:
    """A process-wide screen per resolved policy (keyed by its sha256)."""
    key = policy.sha256
    with _SCREENS_LOCK:
        s = _SCREENS.get(key)
        if s is None:
            s = PromptScreen(policy)
            _SCREENS[key] = s
        return s
