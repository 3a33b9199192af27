"""fit_linear's float32 products: the fit reaches the float64 optimum of the same objective (within
what its stopping rule allows) and is bit-identical run after run."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from guard.screen.train import _balance, fit_linear


def _problem(seed=0, n=3000, d=40, nh=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)  # the training features are float32
    true = rng.normal(size=(d, nh)) * 0.4
    z = x @ true + 0.5 * rng.normal(size=(n, nh)) - 1.5
    y = (z > 0).astype(np.float64)
    y[:200, 2] = 0.3  # soft targets
    m = np.ones_like(y)
    m[:1000, 1] = 0  # head 1 ignores a third of the rows
    w = rng.uniform(0.5, 2.0, size=n)
    return x, y, m, w


def _objective64(x, y, s, l2):
    """The objective fit_linear minimises, entirely in float64 (what fit_linear computed before)."""
    x = x.astype(np.float64)
    d, nh = x.shape[1], y.shape[1]

    def f(theta):
        coef = theta[: d * nh].reshape(d, nh)
        z = x @ coef + theta[d * nh :]
        loss = float((s * (np.logaddexp(0.0, z) - y * z)).sum()) + 0.5 * l2 * float((coef * coef).sum())
        g = s * (1.0 / (1.0 + np.exp(-z)) - y)
        return loss, np.concatenate([(x.T @ g + l2 * coef).ravel(), g.sum(0)])

    return f


def test_float32_fit_reaches_the_float64_optimum():
    x, y, m, w = _problem()
    l2 = 1.0 / (0.05 * len(y))
    s = _balance(y, m, w)
    f = _objective64(x, y, s, l2)
    d, nh = x.shape[1], y.shape[1]
    ref = minimize(
        f, np.zeros(d * nh + nh), jac=True, method="L-BFGS-B", options={"maxiter": 5000, "gtol": 1e-12, "ftol": 1e-15}
    )
    assert np.abs(ref.jac).max() < 1e-8  # the reference: the optimum, to float64 precision
    coef, b = fit_linear(x, y, m, w, l2)
    theta = np.concatenate([coef.astype(np.float64).ravel(), b.astype(np.float64)])
    # the float32 fit stops as the float64 one did, at a projected gradient <= 1e-5 (scipy's pgtol),
    # on its float32 gradient; the exact float64 gradient there is as small (the float32 products'
    # error is far under the stopping rule's tolerance)
    g = f(theta)[1]
    assert np.abs(g).max() < 2e-5
    # per head the objective is strongly convex with modulus >= the smallest eigenvalue mu of its
    # Hessian, so |theta - theta*| <= |grad| / mu: that (with a factor 2 for the Hessian varying
    # between the two points, and the float32 rounding of the returned weights) bounds the distance
    xe = np.concatenate([x.astype(np.float64), np.ones((len(x), 1))], axis=1)
    zr = xe @ np.vstack([ref.x[: d * nh].reshape(d, nh), ref.x[d * nh :]])
    pr = 1.0 / (1.0 + np.exp(-zr))
    for h in range(nh):
        hess = xe.T @ (xe * (s[:, h] * pr[:, h] * (1 - pr[:, h]))[:, None])
        hess[:d, :d] += l2 * np.eye(d)
        mu = np.linalg.eigvalsh(hess)[0]
        gh = np.concatenate([g[: d * nh].reshape(d, nh)[:, h], g[d * nh + h : d * nh + h + 1]])
        th = np.concatenate([coef[:, h], b[h : h + 1]]).astype(np.float64)
        th_ref = np.concatenate([ref.x[: d * nh].reshape(d, nh)[:, h], ref.x[d * nh + h : d * nh + h + 1]])
        bound = 2 * np.linalg.norm(gh) / mu + 1e-6 * np.abs(th_ref).max()
        assert np.linalg.norm(th - th_ref) <= bound, (h, np.linalg.norm(th - th_ref), bound)
    # and in what the heads decide: the logits agree to float32 tolerance
    z = x @ coef + b
    np.testing.assert_allclose(z, zr, rtol=0, atol=2e-3 * max(1.0, np.abs(zr).max()))
    assert f(theta)[0] - ref.fun < 1e-8  # the same optimum: the objective is the optimum's


def test_float32_fit_is_bit_identical_across_calls():
    x, y, m, w = _problem(1, n=2000, d=30)
    a = fit_linear(x, y, m, w, 1e-3)
    b = fit_linear(x.copy(), y.copy(), m.copy(), w.copy(), 1e-3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # float64 features give the same fit as their float32 rounding (the products read float32)
    c = fit_linear(x.astype(np.float64), y, m, w, 1e-3)
    np.testing.assert_array_equal(a[0], c[0])


def test_folds_solved_together_each_reach_their_own_optimum():
    """_fit_oof solves the folds and the final fit as one L-BFGS problem: each part's parameters are
    at that part's own optimum (its float64 gradient as small as the stopping rule allows), its
    out-of-fold logits are those parameters', and a fold whose training rows lack a class for a head
    leaves that head's logits at zero."""
    from guard.screen.train import _both_classes, _fit_logistic, _fit_oof

    x, y, m, w = _problem(2, n=2400, d=25)
    fold = np.arange(len(y)) % 4
    y[fold != 3, 1] = 0.0  # head 1 has positives in fold 3 only: the fold-3 fit of head 1 has none
    l2 = 1.0 / (0.05 * len(y))
    nh = y.shape[1]
    parts = []
    for f in range(4):
        tr = fold != f
        parts.append(_balance(y, m * tr[:, None] * _both_classes(y[tr], m[tr]), w))
    parts.append(_balance(y, m, w))
    coefs, bs = _fit_logistic(x, y, np.concatenate(parts, axis=1), l2, 400)
    oof, coef, b = _fit_oof(x, y, m, w, fold, 4, l2)
    for j, s in enumerate(parts):
        c_j, b_j = coefs[:, j * nh : (j + 1) * nh], bs[j * nh : (j + 1) * nh]
        theta = np.concatenate([c_j.astype(np.float64).ravel(), b_j.astype(np.float64)])
        assert np.abs(_objective64(x, y, s, l2)(theta)[1]).max() < 2e-5, j
        if j < 4:
            np.testing.assert_array_equal(oof[fold == j], x[fold == j] @ c_j + b_j)
    np.testing.assert_array_equal(coef, coefs[:, 4 * nh :])
    np.testing.assert_array_equal(b, bs[4 * nh :])
    assert not oof[fold == 3, 1].any() and oof[fold == 3, 0].any()  # no positive to learn from: not fit
