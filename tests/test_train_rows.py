"""What ``guard train-screen`` feeds each set of heads, and what it keeps between its stages: the
non-English heads learn from the corpus, COCO and every prompt the screen routes to them (not the
shared sets' long English prompts); the routing pre-check is the screen's own; the sentence model
keeps every training prompt's views for the fast gate's second pass, then trims its cache back."""

from __future__ import annotations

import numpy as np
import pytest

from guard.policy import load_policy
from guard.screen.screen import PromptScreen
from guard.screen.train import Example, _label, ml_head_row

PROMPTS = [
    "a cat sleeping on a windowsill",
    "eine nackte frau im bett, by greg rutkowski and artgerm",
    "cocinando metanfetamina en casa, oil painting",
    "बिस्तर पर नग्न महिला",
    "裸の女性がベッドにいる",
    "a photo of a woman, highly detailed, trending on artstation",
    "un cappio al collo, by greg rutkowski and artgerm",
    "ein dealer verkauft kokain an kinder",
    "qzx vlorp naked grimdark",
]


@pytest.fixture(scope="module")
def screen() -> PromptScreen:
    s = PromptScreen(load_policy("default"))
    assert s.multilingual is not None
    return s


def test_the_routing_pre_check_is_the_screens_own_routing(screen):
    scored = screen._score(PROMPTS)
    routed = [sc.multilingual is not None for sc in scored]
    assert [screen.reads_multilingual(p) for p in PROMPTS] == routed
    assert routed[1] and routed[3] and not routed[0] and not routed[5]  # the cases are not all one way


def _ex(text: str, source: str) -> Example:
    y, m = _label(None)
    return Example(text, y, m, source, "g")


def test_non_english_heads_learn_from_the_corpus_coco_and_routed_prompts(screen):
    assert ml_head_row(screen, _ex("a photo of a woman on a beach", "corpus:short"))
    assert ml_head_row(screen, _ex("a photo of a woman on a beach", "corpus:hard_negative+marks"))
    assert ml_head_row(screen, _ex("two dogs playing in the snow", "coco+spacing"))
    # the shared sets' English prompts stay with the English heads; a routed one does not
    assert not ml_head_row(screen, _ex("a photo of a woman, highly detailed, trending on artstation", "i2p"))
    assert not ml_head_row(screen, _ex("a photo of a woman, highly detailed", "rab_nudity+homoglyphs"))
    assert ml_head_row(screen, _ex("eine nackte frau im bett, by greg rutkowski and artgerm", "i2p"))


def test_remembering_keeps_every_prompts_views_then_trims_back(screen):
    emb = screen.embedder
    if not hasattr(emb, "_views_cache"):
        pytest.skip("the torch embedder keeps no cache")
    emb.clear_cache()
    size = emb.views_cache_size
    emb.views_cache_size = 3
    try:
        texts = [f"a red house number {i} by the sea" for i in range(8)]
        with emb.remembering(50):
            first = emb.encode_views(texts, [[(0, 11)]] * len(texts))
            assert len(emb._views_cache) == len(texts)  # more than its own size of 3
            again = emb.encode_views(texts, [[(0, 11)]] * len(texts))
            for a, b in zip(first, again):
                assert a is b  # read back, not encoded again
        assert emb.views_cache_size == 3 and len(emb._views_cache) == 3
        # a cache that is off stays off
        emb.views_cache_size = 0
        with emb.remembering(50):
            assert emb.views_cache_size == 0
    finally:
        emb.views_cache_size = size
        emb.clear_cache()
    np.testing.assert_allclose(first[0][0] @ first[0][0], 1.0, atol=1e-5)


def test_columns_zero_on_every_row_are_left_out_of_the_fit_with_the_same_result():
    from guard.screen.train import _fit_oof, fit_linear

    rng = np.random.default_rng(0)
    n, d, nh = 600, 12, 2
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[:, [3, 7]] = 0.0  # zeroed columns, as the non-English heads' MiniLM columns
    y = (x[:, :2] + 0.3 * rng.standard_normal((n, 2)) > 0).astype(np.float32)
    m = np.ones_like(y)
    w = np.ones(n, np.float32)
    fold = np.arange(n) % 3
    oof, coef, b = _fit_oof(x, y, m, w, fold, 3, 1e-2)
    ref_coef, ref_b = fit_linear(x, y, m, w, 1e-2)
    assert coef.shape == (d, nh) and not coef[[3, 7]].any()
    # the same optimum; float64 L-BFGS on other matrix shapes agrees to its convergence tolerance
    np.testing.assert_allclose(coef, ref_coef, atol=2e-3)
    np.testing.assert_allclose(b, ref_b, atol=2e-3)
    tr = fold != 0
    c0, b0 = fit_linear(x[tr], y[tr], m[tr], w[tr], 1e-2)
    np.testing.assert_allclose(oof[~tr], x[~tr] @ c0 + b0, atol=5e-3)
