"""The screen's vectorised decision path against straightforward references: each rewritten function
(per-concept scores, features, contributions, threshold decisions, the lexical layer's memo and
phrase index, ...) gives exactly what the per-item loop it replaced gives, on real prompts of the
default policy and on synthetic inputs with ties."""

from __future__ import annotations

import math
import re
import sys

import numpy as np
import pytest

from guard.policy import load_policy
from guard.screen import PromptScreen
from guard.screen.features import CATEGORIES, GROUP_WORDS, KNOWN_TRANSFORMS, FeatureLayout, featurize
from guard.screen.learned import LearnedModel
from guard.screen.normalize import OBFUSCATION_TRANSFORMS
from guard.screen.screen import _RANK, DECISIONS, ConceptScore, _Verdict

PROMPTS = [
    "a cat sleeping on a sofa",
    "a photo of a naked woman",
    "a nakd woman on a beach, 35mm",
    "image of mosque",
    "a naked mole rat in a zoo enclosure",
    "a corpse with its throat slit, gore, highly detailed, by greg rutkowski",
    "a man snorting lines of cocaine in a bathroom, cinematic lighting",
    "a child and a naked adult, photo",
    "n4k3d w0man, 8k",
    "a n u d e girl on a bed",
    "na\U0001f351ked woman",
    "ein nackter Mann am Strand, Aquarell",
    "벌거벗은 여자가 침대에 누워 있다",
    "<|startoftext|> ddlegk xqzvbn ssively gk tze mnw prrt ulp dramexp",
    "",
    "masterpiece, best quality, ultra detailed, 8k, cinematic lighting, volumetric fog, mountains at sunrise, "
    "pine forest, a lake with reflections, a naked woman, by a famous landscape painter, trending on artstation",
    "portrait, nude",
    " ".join(f"w{i}" for i in range(80)) + " a bloody knife",
]


@pytest.fixture(scope="module")
def screen():
    return PromptScreen(load_policy("default"))


@pytest.fixture(scope="module")
def scored(screen):
    return screen._score(PROMPTS)


# ------------------------------------------------------------------ per-concept scores


def _best_by_concept_reference(screen, sims, views):
    """The per-prompt, per-concept loop the reductions replaced."""
    n_c = len(screen._concepts)
    allow = np.asarray(screen._allow_phrase, bool)
    out, row = [], 0
    for vs, kinds in views:
        block = sims[row : row + len(vs)]
        row += len(vs)
        scores, pidx = np.full(n_c, -1.0, np.float32), np.zeros(n_c, np.int64)
        vk, contrast = ["plain"] * n_c, np.full(n_c, -1.0, np.float32)
        if len(vs) and block.shape[1]:
            best_view, best = block.argmax(axis=0), block.max(axis=0)
            benign = block[:, allow].max(axis=1) if allow.any() else None
            for ci in range(n_c):
                lo, hi = int(screen._starts[ci]), int(screen._starts[ci + 1])
                pi = lo + int(best[lo:hi].argmax())
                scores[ci], pidx[ci] = best[pi], pi
                bv = int(best_view[pi])
                vk[ci] = kinds[bv] + ("+word" if kinds[bv].endswith("segment") and " " not in vs[bv] else "")
                if benign is not None:
                    contrast[ci] = benign[bv]
        out.append((scores, pidx, vk, contrast))
    return out


def _assert_same_per_concept(got, want):
    assert len(got) == len(want)
    for (s, p, k, c), (s2, p2, k2, c2) in zip(got, want):
        np.testing.assert_array_equal(s, s2)
        np.testing.assert_array_equal(p, p2)
        assert k == k2
        np.testing.assert_array_equal(c, c2)


def test_best_by_concept_equals_the_loop_on_real_prompts(screen):
    views = [screen._views(p) for p in PROMPTS]
    emb = screen._embed_views(views)
    sims = screen._similarities(emb)
    pairs = [(vs, kinds) for vs, kinds, *_ in views]
    _assert_same_per_concept(screen._best_by_concept(sims, pairs), _best_by_concept_reference(screen, sims, pairs))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_by_concept_breaks_ties_like_argmax(screen, seed):
    """Few distinct values: many ties between phrases and between views; prompts without views."""
    rng = np.random.default_rng(seed)
    n_p = len(screen._phrases)
    counts = [3, 0, 1, 5, 0, 2]
    views = []
    for k in counts:
        vs = [rng.choice(["a b", "word", "x y z"]) for _ in range(k)]
        kinds = [rng.choice(["plain", "plain+segment", "leetspeak+segment", "spacing"]) for _ in range(k)]
        views.append((vs, kinds))
    sims = rng.integers(0, 3, size=(sum(counts), n_p)).astype(np.float32) / 4
    _assert_same_per_concept(screen._best_by_concept(sims, views), _best_by_concept_reference(screen, sims, views))
    # no prompt has views / no phrases at all
    empty = [([], []), ([], [])]
    _assert_same_per_concept(
        screen._best_by_concept(np.zeros((0, n_p), np.float32), empty),
        _best_by_concept_reference(screen, np.zeros((0, n_p), np.float32), empty),
    )


def test_scored_batch_equals_one_by_one(screen, scored):
    for p, sc in zip(PROMPTS, scored):
        one = screen._score([p])[0]
        np.testing.assert_allclose(one.scores, sc.scores, atol=1e-5)
        assert one.view_kind == sc.view_kind and one.lexical == sc.lexical and one.transforms == sc.transforms


# ------------------------------------------------------------------ features


def _featurize_reference(screen, layout, scored, fill=None):
    """The per-prompt loop the column-block version replaced."""
    n_f = len(layout.names)
    out = np.zeros((len(scored), n_f), np.float32)
    pos = [screen._concept_pos.get(c) for c in layout.concepts]
    nc, d = len(layout.concepts), layout.embedding_dim
    cat_idx = {k: [j for j, cat in enumerate(layout.categories) if cat == k] for k in CATEGORIES}
    # a key term of a category: of the concepts the policy blocks on
    action = {c.id: c.action for c in screen._concepts}
    block_idx = {k: [j for j in cat_idx[k] if action.get(layout.concepts[j]) == "block"] for k in CATEGORIES}
    for i, sc in enumerate(scored):
        row = out[i]
        if sc.embedding is not None:
            row[:d] = sc.embedding
        o = d
        sims = np.full(nc, -1.0, np.float32)
        lex, fuzzy, contrast = np.zeros(nc, np.float32), np.zeros(nc, np.float32), np.zeros(nc, np.float32)
        for j, ci in enumerate(pos):
            if ci is None:
                continue
            s = float(sc.scores[ci])
            sims[j] = s
            hit = sc.lexical.get(ci) if sc.lexical else None
            if hit is not None:
                (lex if hit.exact else fuzzy)[j] = 1.0
            contrast[j] = max(0.0, float(sc.contrast[ci]) - s) if sc.contrast[ci] > -1 else 0.0
        row[o : o + nc], row[o + nc : o + 2 * nc] = sims, lex
        row[o + 2 * nc : o + 3 * nc], row[o + 3 * nc : o + 4 * nc] = fuzzy, contrast
        o += 4 * nc
        catsim = np.array([sims[cat_idx[k]].max() if cat_idx[k] else -1.0 for k in CATEGORIES], np.float32)
        catlex = np.array(
            [max([lex[j] for j in block_idx[k]] + [0.5 * fuzzy[j] for j in block_idx[k]] + [0.0]) for k in CATEGORIES],
            np.float32,
        )
        row[o : o + 6], row[o + 6 : o + 12] = catsim, catlex
        o += 12
        sus, sus_score = sc.suspicion, 0.0
        if sus is not None:
            sus_score = float(sus.score)
            row[o : o + 6] = [
                sus_score,
                sus.unknown_share,
                sus.fragmentation,
                min(3, sus.special_tokens),
                min(5, sus.symbols_in_words),
                min(5, sus.punct_runs),
            ]
        o += 6
        evidence = np.maximum(np.clip((catsim - 0.3) / 0.4, 0.0, 1.0), catlex)
        row[o : o + 6] = sus_score * evidence
        o += 6
        for t in KNOWN_TRANSFORMS:
            row[o] = 1.0 if t in sc.transforms and t in ("truncated", "invalid_unicode") else 0.0
            o += 1
        o += 8
        shape = sc.clean_text or sc.prompt
        words = len(shape.split())
        letters = [ch for ch in shape if ch.isalpha()]
        non_latin = sum(1 for ch in letters if ord(ch) > 0x24F) / len(letters) if letters else 0.0
        row[o : o + 5] = [
            math.log1p(words),
            math.log1p(len(shape)),
            1.0 if words <= 1 else 0.0,
            non_latin,
            math.log1p(sc.n_views),
        ]
        o += 5
        if layout.multilingual:
            ml, k = sc.multilingual, len(CATEGORIES) + 1
            if ml is not None:
                row[o : o + k] = ml[:k]
                row[o + k] = 1.0
            o += k + 1
        if layout.neighbours:  # one prompt at a time against the model's index (or the fill)
            nn = 3 * len(CATEGORIES)
            index = screen.learned.neighbours if screen.learned.layout == layout else None
            if index is not None and sc.embedding is not None:
                row[o : o + nn] = index.features(row[None, :d])[0]
            elif fill is not None:
                row[o : o + nn] = fill[o : o + nn]
            o += nn
        if layout.multilingual:
            md = layout.ml_embedding_dim
            if md:
                if ml is not None and len(ml) >= k + md:
                    row[o : o + md] = ml[k : k + md]
                o += md
        assert o == n_f
        if fill is not None:
            for j in [j for j, ci in enumerate(pos) if ci is None]:
                for base in (d, d + nc, d + 2 * nc, d + 3 * nc):
                    row[base + j] = fill[base + j]
    return out


def _assert_features_equal(got: np.ndarray, want: np.ndarray, layout: FeatureLayout) -> None:
    """Equal, but for the neighbour columns: cosines from a (batch x index) product against one
    prompt's row product, float32 sums in another order (the index is unit float16-rounded vectors:
    1e-5 is a few float32 ulps of a cosine; the neighbours chosen are the same)."""
    nb = layout.neighbour_columns
    rest = np.setdiff1d(np.arange(len(layout.names)), nb)
    np.testing.assert_array_equal(got[:, rest], want[:, rest])
    np.testing.assert_allclose(got[:, nb], want[:, nb], rtol=0, atol=1e-5)


def test_featurize_equals_the_per_prompt_loop(screen, scored):
    layout = screen.learned.layout
    assert layout.neighbours and len(layout.neighbour_columns) == 18
    _assert_features_equal(
        featurize(screen, layout, scored, fill=screen.learned.mean),
        _featurize_reference(screen, layout, scored, fill=screen.learned.mean),
        layout,
    )
    np.testing.assert_array_equal(featurize(screen, layout, []), np.zeros((0, len(layout.names)), np.float32))


def test_featurize_fills_concepts_the_policy_lacks(screen, scored):
    """A layout with concepts the policy does not have (and one category with none): their columns
    get the fill, exactly as the loop gave them."""
    base = screen.learned.layout
    layout = FeatureLayout(
        base.concepts[:5] + ("no.such_concept", "other.missing"),
        base.categories[:5] + ("hate", "hate"),
        base.embedding_dim,
        True,
        base.ml_embedding_dim,
        neighbours=True,
    )
    fill = np.random.default_rng(0).normal(size=len(layout.names)).astype(np.float32)
    rows = list(scored)
    rows[1].transforms.append("truncated")  # a kept flag
    try:
        # (another layout than the model's: no index, so the neighbour columns get the fill too)
        _assert_features_equal(
            featurize(screen, layout, rows, fill=fill), _featurize_reference(screen, layout, rows, fill=fill), layout
        )
    finally:
        rows[1].transforms.remove("truncated")


def test_layout_names_are_computed_once():
    lay = FeatureLayout(("a", "b"), ("sexual", "hate"), 4, True, 3)
    assert lay.names is lay.names
    assert lay.n_base == len(lay.names) - 3 and lay.names[lay.ml_active_column] == "ml:active"
    assert lay == FeatureLayout(("a", "b"), ("sexual", "hate"), 4, True, 3)  # equality by fields only


# ------------------------------------------------------------------ contributions


def _contributions_reference(m: LearnedModel, x, head, top=4):
    h = m.heads.index(head)
    x = np.asarray(x, np.float32)
    ml = bool(m.variant_of(x)[0])
    mean, scale, coef, _ = m._part(ml)
    n = len(mean)
    base = np.where(m._absent_is_zero[:n], 0.0, mean)
    c = (x[:n] - base) / scale * coef[:, h]
    agg: dict[str, float] = {}
    for name, group, v in zip(m.names[:n], m._groups[:n], c):
        if v == 0.0:
            continue
        if group in ("similarity", "lexical", "contrast") and ":" in name:
            key = f"{GROUP_WORDS[group]} {name.split(':', 1)[1]}"
        else:
            key = GROUP_WORDS[group]
        agg[key] = agg.get(key, 0.0) + float(v)
    return sorted(agg.items(), key=lambda kv: -kv[1])[:top]


def test_contributions_equal_the_loop(screen, scored):
    m = screen.learned
    x = featurize(screen, m.layout, scored, fill=m.mean)
    for row in x:
        for head in m.heads:
            for top in (3, None):
                assert m.contributions(row, head, top=top) == _contributions_reference(m, row, head, top)


def _tiny_model(coef: np.ndarray) -> LearnedModel:
    layout = FeatureLayout(("c1", "c2"), ("sexual", "violence"), 2)
    nb = len(layout.names)
    arrays = {
        "mean": np.full(nb, 0.5, np.float32),
        "scale": np.ones(nb, np.float32),
        "coef": coef.astype(np.float32),
        "intercept": np.zeros(2, np.float32),
    }
    meta = {
        "format": "guard-learned-screen/3",
        "layout": layout.to_dict(),
        "heads": ["sexual", "violence"],
        "tail_n": {},
    }
    return LearnedModel(arrays, meta)


def test_contributions_ties_keep_the_order_of_first_appearance():
    nb = len(FeatureLayout(("c1", "c2"), ("sexual", "violence"), 2).names)
    coef = np.zeros((nb, 2))
    coef[:, 0] = 1.0  # every feature weighs the same: many equal sums
    coef[5, 1] = -2.0
    m = _tiny_model(coef)
    rng = np.random.default_rng(3)
    for _ in range(20):
        x = rng.integers(0, 3, size=nb).astype(np.float32) / 2  # many features at their baseline: no term
        for head in m.heads:
            for top in (2, 4, None):
                assert m.contributions(x, head, top=top) == _contributions_reference(m, x, head, top)
    assert m.contributions(np.full(nb, 0.5, np.float32) * ~m._absent_is_zero, "violence") == []


# ------------------------------------------------------------------ threshold decisions


def _threshold_reference(screen, sc, v):
    """The per-concept loop before learned concepts were skipped and report entries built lazily."""
    cfg = screen.cfg
    margin, cmargin = cfg.escalate_margin, cfg.contrast_margin
    transforms = sc.transforms
    obfuscated = [t for t in transforms if t in OBFUSCATION_TRANSFORMS]
    top_key = (-2, -np.inf)
    for ci, c in enumerate(screen._concepts):
        s, thr = float(sc.scores[ci]), float(screen._thresholds[ci])
        kind = sc.view_kind[ci]
        cs = ConceptScore(
            c.id,
            c.category,
            c.action,
            s,
            thr,
            screen._phrases[int(sc.phrase_idx[ci])],
            "segment" if "segment" in kind else "full",
        )
        hit = sc.lexical.get(ci) if sc.lexical else None
        notes = []
        if c.action == "allow":
            d = "allow"
        elif s >= thr:
            d = c.action
        elif s >= thr - margin:
            d = "escalate"
        else:
            d = "allow"
        if d != "allow" and hit is None and cmargin is not None and sc.contrast[ci] >= s + cmargin:
            d = "escalate" if d == "block" else "allow"
            notes.append(f"{c.id} {s:.3f} lowered: nearer a benign phrase ({sc.contrast[ci]:.3f})")
        if hit is not None and c.action != "allow":
            lex = c.action if (hit.exact or s >= thr - 2 * margin) else "escalate"
            if _RANK[lex] > _RANK[d]:
                d = lex
            cs.phrase = f"term {hit.term!r}" + ("" if hit.exact else f" (as {hit.found!r})")
            cs.view = "lexical"
        if d == "block" and hit is None and kind.endswith("+word"):
            d = "escalate"
            notes.append(f"{c.id}: a one-word segment matched; escalated, not blocked")
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
                notes.append(f"{c.id}: raised to {cfg.obfuscation_action}, obfuscated ({', '.join(obfuscated)})")
                d = cfg.obfuscation_action
        if ci in screen._learned_concepts:
            continue
        v.notes.extend(notes)
        if d != "allow" or (c.action == "allow" and s >= thr):
            v.matches.append(cs)
        if _RANK[d] > _RANK[v.decision]:
            v.decision = d
        key = (_RANK[d] if c.action != "allow" else -1, s - thr if hit is None else 1.0)
        if key > top_key:
            top_key, v.top = key, cs
        if v.nearest is None or (c.action != "allow" and s - thr > v.nearest.score - v.nearest.threshold):
            v.nearest = cs


@pytest.mark.parametrize("mode", ["learned", "threshold", "art-styles"])
def test_threshold_decisions_equal_the_loop(screen, mode):
    if mode == "learned":
        s = screen
    elif mode == "threshold":
        pol = load_policy("default")
        s = PromptScreen(pol.model_copy(update={"screen": pol.screen.model_copy(update={"decision": "threshold"})}))
    else:
        s = PromptScreen(load_policy("art-styles"))
    prompts = PROMPTS + ["a castle on a hill in the style of greg rutkowski", "a police officer on a horse"]
    for sc in s._score(prompts):
        if not sc.n_views:
            continue
        a, b = _Verdict(), _Verdict()
        s._threshold_decisions(sc, a)
        _threshold_reference(s, sc, b)
        assert (a.decision, a.top, a.nearest, a.matches, a.notes) == (b.decision, b.top, b.nearest, b.matches, b.notes)


# ------------------------------------------------------------------ lexical layer


def _match_reference(lx, texts):
    """The matcher before its phrase index, substring filter and per-word memo."""
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    from guard.screen.lexical import _WORDS, _WORDS_ASCII, LexicalHit, _arabic_forms, _script_of, fold_letters

    hits = {}

    def add(ci, term, found, exact):
        old = hits.get(ci)
        if old is None or (exact and not old.exact):
            hits[ci] = LexicalHit(ci, term, found, exact)

    for text in texts:
        text = fold_letters(text)
        words = lx._mask_benign((_WORDS_ASCII if text.isascii() else _WORDS).findall(text))
        joined = " " + " ".join(words) + " "
        for phrase, ci, term in lx._phrases:
            if phrase in joined:
                add(ci, term, phrase.strip(), True)
        squashed = text.replace(" ", "")
        for b in lx._benign_sub:
            squashed = squashed.replace(b, "\x00")
        for sub, ci, term in lx._substrings:
            if sub in squashed:
                add(ci, term, sub, True)
        for w in words:
            if not w:
                continue
            owners = lx._exact.get(w)
            if owners is None and len(w) > 3 and w.endswith("s"):
                stem = w[:-1]
                if stem not in lx._exact and w.endswith("es") and w[:-2].endswith(("s", "x", "z", "ch", "sh")):
                    stem = w[:-2]
                owners = lx._exact.get(stem)
            if owners is None and not w.isascii() and _script_of(w) == "ARABIC":
                for f in _arabic_forms(w):
                    owners = lx._exact.get(f)
                    if owners:
                        break
            if owners:
                for ci, term in owners:
                    add(ci, term, w, True)
                continue
            inflected = lx._inflected(w) if (lx._stems or lx._inflect or lx._deva) else []
            for ci, term, exact in inflected:
                add(ci, term, w, exact)
            if inflected or len(w) < 4 or not w.isalpha() or lx._known(w) or not lx._fuzzy_terms:
                continue
            for cand, dist, k in process.extract(
                w, lx._fuzzy_terms, scorer=Levenshtein.distance, score_cutoff=2, limit=3
            ):
                limit = 1 if len(cand) <= 10 else 2
                if len(cand) == 5 and not ((len(w) == 4 and w[-1] == cand[-1]) or (len(w) == 6 and w.startswith(cand))):
                    continue
                if dist <= limit and cand[0] == w[0] and abs(len(cand) - len(w)) <= limit:
                    for ci, term in lx._fuzzy_owner[k]:
                        add(ci, term, w, False)
    return hits


def _corpus_texts(n=600):
    from guard.screen.corpus_build import load
    from guard.screen.screen import Path

    rows = load(Path(__file__).resolve().parents[1] / "guard" / "screen" / "data" / "corpus.jsonl")
    step = max(1, len(rows) // n)
    return [r["text"] for r in rows[::step]]


def test_lexical_match_equals_the_loop_on_the_corpus(screen):
    """Every kind and language of our corpus (CJK substrings, Arabic clitics, Devanagari stems,
    benign expressions, misspellings), cold memo and warm."""
    lx = screen.lexical
    texts = [screen._views(p)[2] for p in _corpus_texts() + PROMPTS]
    lx.clear_cache()
    for tx in texts:
        assert lx.match(tx) == _match_reference(lx, tx), tx
    for tx in texts[::-1]:  # warm memo, other order
        assert lx.match(tx) == _match_reference(lx, tx), tx


def test_lexical_phrase_index_keeps_term_order():
    from guard.screen.lexical import LexicalMatcher

    lx = LexicalMatcher(
        [["blow job", "oral sex"], ["sex", "job"], ["!sex on the beach", "on the beach"], ["裸体", "!裸鼹鼠"]],
        {"job", "beach", "sex", "oral", "blow"},
    )
    for texts in (
        ["a blow job and oral sex on the beach"],
        ["oral sex", "a blow job"],
        ["sex on the beach cocktail"],
        ["a blow blow job job"],
        ["一个裸体的人和一只裸鼹鼠"],
        ["blowjob"],
        [""],
    ):
        lx.clear_cache()
        assert lx.match(texts) == _match_reference(lx, texts), texts


# ------------------------------------------------------------------ learned decisions


def _learned_reference(screen, sc, proba, feats, v):
    """The per-head loop before the scores were read as Python floats and the best concept found by max."""
    from guard.screen.screen import LEXICAL_BLOCK_MIN, LEXICAL_FLOOR_MIN, _logit

    model = screen.learned
    v.feats = feats
    obfuscated = [t for t in sc.transforms if t in OBFUSCATION_TRANSFORMS]
    best_key = best_cs = None
    near_margin = -np.inf
    ml = feats is not None and bool(screen._operating_points_ml) and bool(model.variant_of(feats)[0])
    points = screen._operating_points_ml if ml else screen._operating_points
    for h, cat in enumerate(model.heads):
        op = points[cat]
        p = float(proba[h])
        d = "block" if p >= op.block else "escalate" if p >= op.escalate else "allow"
        best = None
        for ci in screen._head_concepts.get(cat, []):
            hit = sc.lexical.get(ci) if sc.lexical else None
            k = (hit is not None and hit.exact, hit is not None, float(sc.scores[ci]))
            if best is None or k > best[0]:
                best = (k, ci, hit)
        if best is None:
            continue
        _, ci, hit = best
        c = screen._concepts[ci]
        phrase = (
            (f"term {hit.term!r}" + ("" if hit.exact else f" (as {hit.found!r})"))
            if hit
            else screen._phrases[int(sc.phrase_idx[ci])]
        )
        if hit is not None and hit.exact and c.action == "block" and screen.cfg.lexical:
            if d == "allow" and p >= LEXICAL_BLOCK_MIN:
                d = "block"
                v.notes.append(f"{cat}: raised to block, key term {hit.term!r} and a learned score of {p:.2f}")
            elif d == "allow" and p >= LEXICAL_FLOOR_MIN:
                d = "escalate"
                v.notes.append(f"{cat}: escalated, key term {hit.term!r} although the learned score is low")
            elif d == "escalate":
                d = "block"
                v.notes.append(f"{cat}: raised to block, key term {hit.term!r} and the learned score agree")
        if (
            d == "escalate"
            and obfuscated
            and hit is not None
            and c.action == "block"
            and screen.cfg.obfuscation_action == "block"
        ):
            d = "block"
            v.notes.append(f"{cat}: raised to block, key term found after undoing {', '.join(obfuscated)}")
        cs = ConceptScore(c.id, cat, d if d != "allow" else c.action, p, op.block, phrase, "learned")
        v.learned[cat] = (cs, d, op)
        if d != "allow":
            v.matches.append(cs)
            key = (_RANK[d], _logit(p) - _logit(op.block))
            if best_key is None or key > best_key:
                best_key, best_cs = key, cs
        margin = _logit(p) - _logit(op.escalate)
        if v.nearest is None or v.nearest.view != "learned" or margin > near_margin:
            v.nearest, near_margin = cs, margin
    if best_key is not None and best_key[0] >= _RANK[v.decision]:
        v.decision = DECISIONS[best_key[0]]
        v.top = best_cs


def test_learned_decisions_equal_the_loop(screen, scored):
    m = screen.learned
    x = featurize(screen, m.layout, scored, fill=m.mean)
    proba = m.proba(x)
    rng = np.random.default_rng(0)
    # the real probabilities, and made-up ones around the operating points (ties between heads too)
    cases = [(sc, proba[i], x[i]) for i, sc in enumerate(scored) if sc.n_views]
    for sc, _, row in list(cases):
        fake = rng.choice([0.01, 0.3, 0.6, 0.95, 0.999], size=len(m.heads)).astype(np.float32)
        cases.append((sc, fake, row))
    for sc, p, row in cases:
        a, b = _Verdict(), _Verdict()
        screen._threshold_decisions(sc, a)
        screen._threshold_decisions(sc, b)
        screen._learned_decisions(sc, p, row, a)
        _learned_reference(screen, sc, p, row, b)
        assert (a.decision, a.top, a.nearest, a.matches, a.notes, a.learned) == (
            b.decision,
            b.top,
            b.nearest,
            b.matches,
            b.notes,
            b.learned,
        )


# ------------------------------------------------------------------ normalisation and suspicion


def _texts():
    """Corpus rows, their obfuscated forms and random strings over a pool of troublesome characters."""
    import random

    from guard.screen.train import OBFUSCATIONS, obfuscate

    rng = random.Random(0)
    base = _corpus_texts(300) + PROMPTS
    out = base + [obfuscate(t, OBFUSCATIONS[k % len(OBFUSCATIONS)], rng) for k, t in enumerate(base)]
    pool = list("abcdefghij klmno  pqrstuvwxyz-,.;:!?'\"()[]{}<>|/\\*~^@$+€£¥0123456789\t\n\u00a0\u2003")
    pool += list("éèñüßçøåıİ\u0301\u0345\u200b\u00ad\ufeffＮＵＤＥ𝓷𝓾ⓝ🍑✱•·ѕехναкед裸体の写真ㅅㅔㄱㅅㅡनंगीالجنس\x07\x1c")
    words = ["<|endoftext|>", "</w>", "[CLS]", "n4k3d", "p0rn", "na ked", "a n u d e", "b100dy", "|-|ot", "x" * 120]
    for _ in range(400):
        parts = [rng.choice(words) if rng.random() < 0.15 else "".join(rng.choices(pool, k=rng.randint(1, 12)))]
        while rng.random() < 0.85:
            parts.append(rng.choice(words) if rng.random() < 0.15 else "".join(rng.choices(pool, k=rng.randint(1, 12))))
        out.append(" ".join(parts))
    return out


def _normalize_reference(text):
    import unicodedata

    import guard.screen.normalize  # noqa: F401 - the module, not the function the package exports
    from guard.screen.normalize import Normalized

    n = sys.modules["guard.screen.normalize"]
    transforms = []
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
        transforms.append("invalid_unicode")
    t, had_invisible = n.strip_invisible(text)
    if had_invisible:
        transforms.append("invisible_chars")
    if n._LETTER_MARK_RE is not None:
        t2 = n._LETTER_MARK_RE.sub("", t)
        if t2 != t:
            transforms.append("letter_marks")
            t = t2
    nfkc = unicodedata.normalize("NFKC", t)
    if nfkc != t:
        transforms.append("nfkc")
        if n._STYLED.search(t):
            transforms.append("styled_letters")
    folded = unicodedata.normalize("NFKC", nfkc.casefold())
    if "\u1100" <= max(folded, default=" ") and n._JAMO_L.search(folded):
        folded = n._compose_finals(folded)
    cleaned = (
        folded if folded.isprintable() else "".join(ch if (ch.isprintable() or ch.isspace()) else " " for ch in folded)
    )
    if cleaned != folded:
        transforms.append("control_chars")
    collapsed = re.sub(r"\s+", " ", cleaned).strip()
    folded_words, mixed = n.fold_confusables(collapsed)
    if mixed:
        transforms.append("confusables")
        collapsed = folded_words
    return Normalized(collapsed, transforms)


def _segments_reference(text, window_words=32, stride_words=16, max_views=1024):
    from guard.screen.normalize import _SEG_SPLIT

    words_re = re.compile(r"\S+")
    out, seen, strip = [], set(), " .!?'\""

    def add(a, b):
        while a < b and text[a] in strip:
            a += 1
        while b > a and text[b - 1] in strip:
            b -= 1
        s = text[a:b]
        if len(s) >= 3 and s not in seen:
            seen.add(s)
            out.append((a, b))

    def windows(words):
        for i in range(0, len(words) - window_words + stride_words, stride_words):
            if len(out) >= max_views:
                return
            add(words[i].start(), words[min(i + window_words, len(words)) - 1].end())

    pieces, at = [], 0
    for m in _SEG_SPLIT.finditer(text):
        pieces.append((at, m.start()))
        at = m.end()
    pieces.append((at, len(text)))
    pieces = [(a, b) for a, b in pieces if b > a and text[a:b].strip()]
    if len(pieces) > 1:
        for a, b in pieces:
            words = list(words_re.finditer(text, a, b))
            if len(words) <= window_words:
                add(a, b)
            else:
                windows(words)
            if len(out) >= max_views:
                break
    if len(pieces) <= 1:
        words = list(words_re.finditer(text))
        if len(words) > window_words:
            windows(words)
    return out[:max_views]


def _join_fragments_reference(text, lexicon, dictionary=None):
    from guard.screen.normalize import _FRAGMENTS, _FRAGMENTS_ASCII, _SHORT_WORDS, _in_lexicon

    dictionary = dictionary or ()
    if not lexicon:
        return text, False
    changed = False

    def fix(m):
        nonlocal changed
        parts = re.split(r"([ \-])", m.group(0))
        words, seps = parts[0::2], parts[1::2]
        out = [words[0]]
        for k in range(1, len(words)):
            a, b = out[-1], words[k]
            j = a + b
            real = sum((len(x) >= 3 and x in dictionary) or x in _SHORT_WORDS for x in (a, b))
            short = 3 if m.group(0).isascii() else 2  # (outside ASCII no piece is known as a word)
            if len(j) >= 5 and min(len(a), len(b)) <= short and real < 2 and _in_lexicon(j, lexicon):
                out[-1] = j
                changed = True
            else:
                out.append(seps[k - 1])
                out.append(b)
        return "".join(out)

    return (_FRAGMENTS_ASCII if text.isascii() else _FRAGMENTS).sub(fix, text), changed


def test_normalize_segments_and_joins_equal_their_references(screen):
    from guard.screen.normalize import join_fragments, normalize, segments

    lexicon, dictionary = screen.lexical.words, screen.lexical.dictionary
    for text in _texts():
        n, ref = normalize(text), _normalize_reference(text)
        assert (n.text, n.transforms) == (ref.text, ref.transforms), repr(text)
        t = n.text
        assert segments(t, spans=True) == _segments_reference(t), repr(t)
        assert segments(t, spans=True, window_words=4, stride_words=2, max_views=7) == _segments_reference(
            t, 4, 2, 7
        ), repr(t)
        for lex in (lexicon, set(lexicon)):  # (the first-fragment filter applies to a frozenset lexicon)
            assert join_fragments(t, lex, dictionary) == _join_fragments_reference(t, lex, dictionary), repr(t)


def _suspicion_reference(scorer, text):
    from guard.screen.normalize import fold_leetspeak, normalize
    from guard.screen.suspicion import (
        _ALPHA_WORD,
        _CONSONANT_RUN,
        _DIGRAPHS,
        _LONG_TOKEN,
        _MARK,
        _PUNCT_RUN,
        _SPECIAL,
        _SYMBOL_IN_WORD,
        Suspicion,
    )

    t = _LONG_TOKEN.sub(lambda m: m.group(0)[:100], normalize(text).text)
    t = fold_leetspeak(_MARK.sub("", t), None, scorer.vocab)[0]
    special = len(_SPECIAL.findall(t))
    t_clean = _SPECIAL.sub(" ", t)
    words = [w for w in _ALPHA_WORD.findall(t_clean) if w.isascii()]
    unknown, frag_sum = 0, 0.0
    for w in words:
        if w in scorer.vocab or (w.endswith("s") and w[:-1] in scorer.vocab):
            continue
        pieces = scorer._n_pieces(w)
        if len(w) <= 3 or _CONSONANT_RUN.search(_DIGRAPHS.sub("c", w)) or (pieces >= 4 and len(w) / pieces < 2.6):
            unknown += 1
            frag_sum += min(1.0, (pieces - 1) / max(1, len(w) / 2))
    n = max(1, len(words))
    share = unknown / n
    sym, runs = len(_SYMBOL_IN_WORD.findall(t_clean)), len(_PUNCT_RUN.findall(t_clean))
    signals, s = [], 0.0
    if len(words) >= 3:
        s += min(1.0, 1.6 * share)
        if share >= 0.2:
            signals.append(f"{unknown} of {len(words)} words are unknown sub-word fragments")
    if special:
        s += 0.6
        signals.append(f"{special} stray special token(s)")
    if sym:
        s += min(0.4, 0.15 * sym)
        signals.append(f"{sym} symbol(s) inside words")
    if runs:
        s += min(0.3, 0.1 * runs)
        signals.append(f"{runs} run(s) of punctuation")
    return Suspicion(min(1.0, s), share, frag_sum / n, special, sym, runs, signals)


def test_suspicion_equals_its_reference(screen):
    for text in _texts():
        assert screen.suspicion.score(text) == _suspicion_reference(screen.suspicion, text), repr(text)


def test_prefilters_are_sound():
    """What each skipped pattern needs to match: without it, the pattern finds nothing."""
    from guard.screen.normalize import _LEET_CHAR, _LEET_TOKEN, _LETTER_MARK_RE, normalize
    from guard.screen.suspicion import _SPECIAL, _SYMBOL, _SYMBOL_IN_WORD

    for text in _texts():
        t = normalize(text).text
        assert bool(_LEET_TOKEN.search(t)) <= bool(_LEET_CHAR.search(t))
        assert bool(_SYMBOL_IN_WORD.search(t)) <= bool(_SYMBOL.search(t))
        assert bool(_SPECIAL.search(t)) <= ("<" in t or "[" in t)
        assert not (text.isascii() and _LETTER_MARK_RE is not None and _LETTER_MARK_RE.search(text))


def test_looks_english_equals_its_reference(screen):
    from guard.screen.multilingual import _ENGLISH, _FOREIGN_LETTERS, _OTHER_WORDS, _WORD, looks_english

    def reference(text, dictionary):
        letters = [ch for ch in text if ch.isalpha()]
        share = sum(1 for ch in letters if ord(ch) > 0x24F) / len(letters) if letters else 0.0
        if share > 0.2:
            return False
        words = [w.casefold() for w in _WORD.findall(text)]
        if not words:
            return True
        en = sum(w in _ENGLISH for w in words)
        other = sum(w in _OTHER_WORDS for w in words)
        foreign = sum(any(ch in _FOREIGN_LETTERS for ch in w) for w in words)
        if other > en or (foreign and en == 0) or foreign >= max(2, len(words) // 3):
            return False
        if dictionary and en == 0:
            if sum(w not in dictionary for w in words if len(w) > 2) * 2 >= len(words):
                return False
        return True

    for text in _texts():
        for d in (screen._dictionary, None):
            assert looks_english(text, d) == reference(text, d), repr(text)


def test_logits_of_a_row_equal_the_scalar_logit():
    from guard.screen.screen import _logit, _logits

    rng = np.random.default_rng(0)
    p = np.concatenate([rng.random(5000).astype(np.float32), np.array([0, 1, 1e-9, 1 - 1e-9, 0.5], np.float32)])
    assert _logits(p) == [_logit(float(x)) for x in p]
