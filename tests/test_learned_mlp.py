"""The MLP head type of the learned screen: its seeded fit (starts at the logistic regression,
learns an interaction the regression cannot, stops early on a grouped validation share), the
artifact formats (3 with ``head_type``, 2 still read as logistic regression, anything else refused
with the file named), and its explanations (exact: the per-feature contributions plus a constant
are the logit, and the deciding signal is evidence the prompt has)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from guard.errors import GuardError
from guard.screen.learned import DEFAULT_MODEL, LearnedModel, get_model
from guard.screen.train import MLPConfig, _val_rows, fit_linear, fit_mlp, mlp_forward


def _xor(seed=0, n=1200):
    """Two heads: head 0 is linear, head 1 is the XOR of two signs (no linear model separates it)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = np.stack([(x[:, 0] + 0.5 * x[:, 2] > 0), (x[:, 0] * x[:, 1] > 0)], 1).astype(np.float32)
    return x, y, np.ones_like(y), np.ones(n, np.float32)


def _acc(z, y):
    return ((z > 0) == (y > 0.5)).mean(0)


def test_fit_mlp_starts_at_the_regression_and_learns_what_it_cannot():
    x, y, m, w = _xor()
    init = fit_linear(x, y, m, w, l2=1e-3)
    cfg = MLPConfig(hidden=16, learning_rate=1e-2, batch=128, max_epochs=60, patience=8)
    p0, ep0 = fit_mlp(x, y, m, w, 1e-3, seed=0, cfg=cfg, epochs=0, init=init)
    assert ep0 == 0
    np.testing.assert_allclose(mlp_forward(x, p0)[0], x @ init[0] + init[1], atol=1e-5)  # epoch 0 = the regression
    val = np.arange(len(x)) % 5 == 0
    p, ep = fit_mlp(x, y, m, w, 1e-3, seed=0, cfg=cfg, val=val, init=init)
    assert 0 < ep <= cfg.max_epochs
    xt, yt, _, _ = _xor(seed=1)
    acc_lr = _acc(xt @ init[0] + init[1], yt)
    acc_mlp = _acc(mlp_forward(xt, p)[0], yt)
    assert acc_lr[1] < 0.65 < 0.9 < acc_mlp[1], (acc_lr, acc_mlp)  # XOR: chance for the regression
    assert acc_mlp[0] > 0.95  # the linear head stays right


def test_fit_mlp_is_seeded_and_honours_the_mask_and_zero_columns():
    x, y, m, w = _xor(2, n=600)
    x[:, 4] = 0.0  # a masked-out group: no weight may grow on it
    cfg = MLPConfig(hidden=8, max_epochs=3)
    a, _ = fit_mlp(x, y, m, w, 1e-3, seed=3, cfg=cfg, epochs=3)
    b, _ = fit_mlp(x, y, m, w, 1e-3, seed=3, cfg=cfg, epochs=3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not a["w1"][4].any() and not a["coef"][4].any()
    c, _ = fit_mlp(x, y, m, w, 1e-3, seed=4, cfg=cfg, epochs=3)
    assert not np.array_equal(a["w1"], c["w1"])
    # what a masked row says does not matter to that head
    m2 = m.copy()
    m2[:300, 1] = 0
    y2 = y.copy()
    y2[:300, 1] = 1 - y2[:300, 1]
    d, _ = fit_mlp(x, y, m2, w, 1e-3, seed=3, cfg=cfg, epochs=3)
    e, _ = fit_mlp(x, y2, m2, w, 1e-3, seed=3, cfg=cfg, epochs=3)
    np.testing.assert_allclose(mlp_forward(x, d)[0], mlp_forward(x, e)[0], atol=1e-5)


def test_validation_rows_are_whole_groups():
    groups = [f"g{i // 3}" for i in range(3000)]
    v = _val_rows(groups, 0.15, seed=0)
    assert 0.1 < v.mean() < 0.2
    by_group = {}
    for g, f in zip(groups, v, strict=True):
        by_group.setdefault(g, set()).add(bool(f))
    assert all(len(s) == 1 for s in by_group.values())


def _mlp_artifact(hidden=12, seed=0):
    """The shipped artifact's arrays and metadata turned into an MLP artifact with a random trunk
    (large enough that many units switch on and off between prompts)."""
    base = get_model()
    rng = np.random.default_rng(seed)
    arrays = dict(base._arrays)
    for suffix, n in (("", len(base.mean)), ("_ml", len(base.mean_ml) if base.has_ml else 0)):
        if not n:
            continue
        arrays["w1" + suffix] = (rng.normal(size=(n, hidden)) * 0.1).astype(np.float32)
        arrays["b1" + suffix] = rng.normal(size=hidden).astype(np.float32) * 0.1
        arrays["w2" + suffix] = rng.normal(size=(hidden, len(base.heads))).astype(np.float32)
    meta = {**base.meta, "format": "guard-learned-screen/3", "head_type": "mlp"}
    return arrays, meta


@pytest.fixture(scope="module")
def feats():
    from guard.policy import load_policy
    from guard.screen import PromptScreen
    from guard.screen.features import featurize

    screen = PromptScreen(load_policy("default"))
    m = get_model()
    prompts = [
        "a photo of a naked woman",
        "a corpse with its throat slit, gore",
        "a man snorting lines of cocaine",
        "a bowl of fruit on a table",
        "벌거벗은 여자가 침대에 누워 있다",
    ]
    return prompts, featurize(screen, m.layout, screen._score(prompts), fill=m.mean, neighbours=m.neighbours)


def test_mlp_logits_and_exact_contributions(feats):
    prompts, x = feats
    arrays, meta = _mlp_artifact()
    mlp = LearnedModel(arrays, meta)
    assert mlp.head_type == "mlp"
    z = mlp.logits(x)
    # the logits by hand: linear part plus the ReLU trunk, per variant
    for i in range(len(prompts)):
        ml = bool(mlp.variant_of(x[i : i + 1])[0])
        sfx = "_ml" if ml else ""
        mean, scale = arrays["mean" + sfx], arrays["scale" + sfx]
        xs = (x[i, : len(mean)] - mean) / scale
        ref = xs @ arrays["coef" + sfx] + arrays["intercept" + sfx]
        ref = ref + np.maximum(xs @ arrays["w1" + sfx] + arrays["b1" + sfx], 0) @ arrays["w2" + sfx]
        np.testing.assert_allclose(z[i], ref, rtol=1e-5, atol=1e-4)
    # the trunk changes the scores (this is not the regression in disguise)
    assert np.abs(z - get_model().logits(x)).max() > 0.1
    for h in mlp.heads:
        for i in range(len(prompts)):
            parts, const = mlp.logit_parts(x[i], h)
            assert abs(float(parts.sum()) + const - float(z[i, mlp.heads.index(h)])) < 1e-4
            grouped = mlp.contributions(x[i], h, top=None)
            assert abs(sum(v for _, v in grouped) - float(parts.sum())) < 1e-4
            assert [v for _, v in grouped] == sorted((v for _, v in grouped), reverse=True)


def test_mlp_contribution_is_a_gradient_times_input(feats):
    """Each feature's contribution is its standardised distance from the baseline times the
    logit's finite-difference slope in that feature (the network is linear near the prompt)."""
    _, x = feats
    mlp = LearnedModel(*_mlp_artifact())
    h = mlp.heads.index("sexual")
    parts, _ = mlp.logit_parts(x[0], "sexual")
    j = int(np.argmax(np.abs(parts)))
    eps = 1e-3 * float(mlp.scale[j])
    hi, lo = x[0].copy(), x[0].copy()
    hi[j] += eps
    lo[j] -= eps
    slope = (mlp.logits(hi[None])[0, h] - mlp.logits(lo[None])[0, h]) / (2 * eps)
    base = 0.0 if mlp._absent_is_zero[j] else float(mlp.mean[j])
    assert parts[j] == pytest.approx(slope * (x[0, j] - base), rel=2e-2)


def test_regression_decomposition_matches_its_contributions(feats):
    _, x = feats
    m = get_model()
    z = m.logits(x)
    for i in range(len(x)):
        parts, const = m.logit_parts(x[i], "violence")
        assert abs(float(parts.sum()) + const - float(z[i, m.heads.index("violence")])) < 1e-4
        assert abs(sum(v for _, v in m.contributions(x[i], "violence", top=None)) - float(parts.sum())) < 1e-3


def test_artifact_formats(tmp_path):
    meta = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    with np.load(DEFAULT_MODEL.with_suffix(".npz")) as z:
        arrays = {k: z[k] for k in z.files}

    def write(name, meta_, arrays_):
        np.savez(tmp_path / f"{name}.npz", **arrays_)
        (tmp_path / f"{name}.json").write_text(json.dumps(meta_))
        return tmp_path / name

    old = LearnedModel.load(write("old", {**meta, "format": "guard-learned-screen/2", "head_type": "mlp"}, arrays))
    assert old.head_type == "lr"  # format 2 knew only the regression
    with pytest.raises(GuardError, match=r"future\.json.*format 'guard-learned-screen/9' is not supported"):
        LearnedModel.load(write("future", {**meta, "format": "guard-learned-screen/9"}, arrays))
    with pytest.raises(GuardError, match=r"nohidden\.json: MLP learned screen artifact lacks the array 'w1'"):
        LearnedModel.load(write("nohidden", {**meta, "format": "guard-learned-screen/3", "head_type": "mlp"}, arrays))
    with pytest.raises(GuardError, match="unknown learned head type 'gbm'"):
        LearnedModel.load(write("gbm", {**meta, "format": "guard-learned-screen/3", "head_type": "gbm"}, arrays))
    a, mt = _mlp_artifact()
    a["w2"] = a["w2"][:, :3]
    with pytest.raises(GuardError, match="MLP arrays are inconsistent"):
        LearnedModel(a, mt)
    a, mt = _mlp_artifact()
    mlp = LearnedModel.load(write("mlp", mt, a))
    assert mlp.head_type == "mlp" and mlp.operating_point("sexual").block > 0


def test_a_fitted_mlp_names_evidence_the_prompt_has():
    """An MLP fitted on real feature rows of training prompts (a small seeded sample of the
    corpus's train part) explains a sexual and a violent prompt by signals present in them: the
    deciding signal pushes towards the category, and present-or-not evidence among the top
    signals (a key term, a benign look-alike, suspicion, obfuscation) is there in the row."""
    import random

    from guard.policy import load_policy
    from guard.screen import PromptScreen
    from guard.screen.corpus_build import load
    from guard.screen.features import CATEGORIES, featurize

    rng = random.Random(0)
    rows = [r for r in load() if r["split"] == "train" and r["kind"] in ("explicit", "hard_negative", "short")]
    pick = []
    for label in ("sexual", "violence", "benign"):
        sel = [r for r in rows if r["label"] == label]
        pick += rng.sample(sel, 40 if label != "benign" else 80)
    screen = PromptScreen(load_policy("default"))
    base = get_model()
    texts = [r["text"] for r in pick]
    x = featurize(screen, base.layout, screen._score(texts), fill=base.mean, neighbours=base.neighbours)[
        :, : len(base.mean)
    ]
    y = np.zeros((len(pick), len(CATEGORIES)), np.float32)
    for i, r in enumerate(pick):
        if r["label"] != "benign":
            y[i, CATEGORIES.index(r["label"])] = 1.0
    m = np.ones_like(y)
    xs = (x - base.mean) / base.scale
    w = np.ones(len(y), np.float32)
    init = fit_linear(xs, y, m, w, l2=0.01)
    p, _ = fit_mlp(xs, y, m, w, 0.01, seed=0, cfg=MLPConfig(hidden=16, batch=32), epochs=15, init=init)
    arrays = {k: v for k, v in base._arrays.items() if not k.endswith("_ml")}
    arrays.update({"coef": p["coef"], "intercept": p["intercept"], "w1": p["w1"], "b1": p["b1"], "w2": p["w2"]})
    mlp = LearnedModel(arrays, {**base.meta, "format": "guard-learned-screen/3", "head_type": "mlp"})
    assert not mlp.has_ml and np.abs(p["w2"]).max() > 0
    from guard.screen.features import GROUP_WORDS

    for prompt, cat in [("a photo of a naked woman", "sexual"), ("a corpse with its throat slit, gore", "violence")]:
        row = featurize(screen, mlp.layout, screen._score([prompt]), fill=mlp.mean, neighbours=mlp.neighbours)[0]
        h = mlp.heads.index(cat)
        assert mlp.logits(row[None])[0, h] > 0, prompt
        top = mlp.contributions(row, cat, top=3)
        assert top[0][1] > 0, top
        parts, _ = mlp.logit_parts(row, cat)
        for name, v in top:
            # the features behind a named signal: all of its group (and concept)
            idx = [
                j
                for j, (n, g) in enumerate(zip(mlp.names, mlp._groups, strict=True))
                if j < len(parts) and (name == GROUP_WORDS[g] or name == f"{GROUP_WORDS[g]} {n.split(':', 1)[-1]}")
            ]
            assert idx, name
            assert abs(sum(parts[j] for j in idx) - v) < 1e-4
            present = [j for j in idx if mlp._absent_is_zero[j]]
            if present:
                assert any(row[j] != 0 for j in present), (prompt, name)
            assert not (name.startswith(GROUP_WORDS["contrast"]) and v > 0), top


@pytest.mark.slow
def test_train_screen_mlp_end_to_end_on_a_tiny_subset(tmp_path):
    """`train_screen(head="mlp")` on a tiny corpus subset: seeded (two runs write the same trunk),
    the artifact is format 3 with the MLP arrays for every set of heads, small, loads with no
    training, reproduces the recorded corpus metrics, and the model card names the head type."""
    from guard.policy import load_policy
    from guard.screen import PromptScreen
    from guard.screen.corpus_build import load
    from guard.screen.multilingual import build_for
    from guard.screen.train import corpus_eval_metrics, train_screen

    by_label: dict[tuple, list] = {}
    for r in load():
        by_label.setdefault((r["label"], r["split"]), []).append(r)
    subset = [r for v in by_label.values() for r in v[:25]]
    cfg = MLPConfig(hidden=8, max_epochs=3, patience=2)
    kw = dict(data=None, corpus_rows=subset, cache=False, progress=False, folds=3, head="mlp", mlp=cfg)
    a = train_screen(out=tmp_path / "a" / "m", **kw)
    b = train_screen(out=tmp_path / "b" / "m", **kw)
    ma, mb = LearnedModel.load(a.path), LearnedModel.load(b.path)
    assert ma.head_type == "mlp" and a.meta["format"] == "guard-learned-screen/3"
    for ml in ma._hidden:
        for x, y in zip(ma._hidden[ml], mb._hidden[ml], strict=True):
            np.testing.assert_array_equal(x, y)
    assert set(ma._hidden) == ({False, True} if ma.has_ml else {False})
    assert a.path.with_suffix(".npz").stat().st_size < 2_000_000
    assert a.meta["oof"] == b.meta["oof"] and set(a.meta["oof_heads"]) == set(ma.heads)
    assert a.meta["trained"]["mlp"]["hidden"] == 8 and "fold_best_epochs" in a.meta["trained"]["mlp"]["fits"]["main"]
    s = PromptScreen(load_policy("default"))
    s.learned = None
    s.multilingual = build_for(s)
    assert corpus_eval_metrics(s, ma, subset) == a.meta["corpus_eval"]
    card = (tmp_path / "a" / "MODEL_CARD.md").read_text()
    assert "An MLP head (head type `mlp`" in card and "--head mlp --hidden 8" in card
    assert "## Out-of-fold rates per head" in card
    with pytest.raises(ValueError, match="unknown head type 'gbm'"):
        train_screen(out=tmp_path / "c" / "m", **{**kw, "head": "gbm"})
