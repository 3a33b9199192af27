"""The label-aware neighbour features (guard.screen.neighbours): against a brute-force reference,
out-of-fold in training, stored and validated, and as the shipped model computes them."""

from __future__ import annotations

import re

import numpy as np
import pytest

from guard.errors import GuardError
from guard.screen.features import CATEGORIES, featurize
from guard.screen.learned import DEFAULT_MODEL, LearnedModel
from guard.screen.neighbours import ARRAYS, NeighbourIndex, names
from guard.screen.train import fit_neighbours, neighbour_labels

N, D, H = 400, 24, 3


@pytest.fixture(scope="module")
def screen():
    from guard.policy import load_policy
    from guard.screen import PromptScreen

    return PromptScreen(load_policy("default"))


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(6, D))
    which = rng.integers(0, 6, N)
    emb = centres[which] + 0.4 * rng.normal(size=(N, D))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.stack([(which == h).astype(np.int8) for h in range(H)], 1)
    labels[rng.random((N, H)) < 0.2] = -1  # a head that ignores the prompt
    index = NeighbourIndex.fit(emb.astype(np.float32), labels, dim=8, candidates=16, nearest=5, tau=0.1)
    return emb.astype(np.float32), labels, index


def _reference(index: NeighbourIndex, q: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """One prompt at a time, float64, sorting every allowed prompt: what the features mean."""
    out = np.zeros((len(q), 3 * index.n_heads))
    v = index.vecs.astype(np.float64)
    for i, row in enumerate(q.astype(np.float64)):
        sims = v[allowed] @ row
        order = np.argsort(-sims, kind="stable")[: index.candidates]
        s, lab = sims[order], index.labels[allowed[order]]
        for h in range(index.n_heads):
            known = np.flatnonzero(lab[:, h] >= 0)[: index.nearest]
            if len(known):
                wt = np.exp((s[known] - s[0]) / index.tau)
                out[i, h] = (wt * (lab[known, h] == 1)).sum() / wt.sum()
            pos, neg = s[lab[:, h] == 1], s[lab[:, h] == 0]
            out[i, index.n_heads + h] = max(0.0, pos.max()) if len(pos) else 0.0
            out[i, 2 * index.n_heads + h] = max(0.0, neg.max()) if len(neg) else 0.0
    return out


def test_features_match_the_brute_force_reference(toy):
    emb, _, index = toy
    rng = np.random.default_rng(1)
    queries = emb[rng.choice(N, 40, replace=False)] + 0.1 * rng.normal(size=(40, D)).astype(np.float32)
    got = index.features(queries)
    want = _reference(index, index.project(queries), np.arange(N))
    # float32 products against float64 ones of the same (int8-step) vectors: a few ulps of a cosine
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert got.shape == (40, 3 * H) and got.dtype == np.float32


def test_tied_neighbours_are_taken_by_index_whichever_search_runs(monkeypatch):
    """The index holds the same prompt under several labels (identical vectors): which of them fill the
    K candidates is fixed (largest cosine first, equal ones by index), the same with torch's top-k and
    numpy's partition, and as the float64 reference sorts them."""
    import guard.screen.neighbours as nbmod

    rng = np.random.default_rng(3)
    emb = rng.normal(size=(3000, D)).astype(np.float32)
    copies = np.sort(rng.choice(len(emb), 400, replace=False))  # one prompt 400 times, scattered
    emb[copies] = emb[copies[0]]
    labels = np.zeros((len(emb), H), np.int8)
    labels[copies[1::2]] = 1  # the copies alternate negative / positive
    index = NeighbourIndex.fit(emb, labels, dim=8, candidates=16, nearest=5, tau=0.1)
    q = emb[copies[:1]] + 0.01 * rng.normal(size=(1, D)).astype(np.float32)
    import torch  # noqa: F401 - loaded, so the search takes torch's top-k

    assert nbmod._torch_module() is not None
    with_torch = index.features(q)
    monkeypatch.setattr(nbmod, "_torch_module", lambda: None)
    with_numpy = index.features(q)
    np.testing.assert_array_equal(with_torch, with_numpy)
    want = _reference(index, index.project(q), np.arange(len(emb)))
    np.testing.assert_allclose(with_torch, want, rtol=0, atol=1e-5)
    # the five nearest known labels are copies 0-4: negative, positive, negative, positive, negative
    np.testing.assert_allclose(with_torch[0, :H], 0.4, atol=1e-5)


def test_a_prompt_near_its_own_kind_reads_its_label(toy):
    emb, labels, index = toy
    i = int(np.flatnonzero(labels[:, 0] == 1)[0])
    f = index.features(emb[i : i + 1])[0]
    assert f[H + 0] > 0.98  # the nearest positive for head 0 is (the stored form of) itself
    assert f[0] > 0.8  # and most of its labelled neighbours are positives
    assert f[H + 0] > f[2 * H + 0]


def test_leaving_self_out_skips_the_prompts_own_entry(toy):
    emb, labels, index = toy
    i = int(np.flatnonzero(labels[:, 0] == 1)[0])
    q = emb[i : i + 1]
    assert index.features(q)[0, H + 0] > 0.98  # in place: its own (positive) entry
    out = index.leaving_self_out()
    assert out.skip_at is not None and index.skip_at is None  # a copy; the model's index is unchanged
    got = out.features(q)
    others = np.setdiff1d(np.arange(N), [i])
    want = _reference(index, index.project(q), others)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert not np.allclose(got, index.features(q), atol=1e-4)


def test_fold_features_never_read_the_prompts_own_fold(toy):
    emb, _, index = toy
    fold = np.arange(N) % 4
    q = index.project(emb)
    got = index.fold_features(q, fold, fold)
    for f in range(4):
        rows = np.flatnonzero(fold == f)
        want = _reference(index, q[rows], np.flatnonzero(fold != f))
        np.testing.assert_allclose(got[rows], want, rtol=0, atol=1e-5)
    # with every fold allowed, a prompt finds itself: its own fold is what made the difference
    assert not np.allclose(got, index.features(emb), atol=1e-3)


def test_arrays_round_trip_and_are_small(toy):
    emb, _, index = toy
    arrays = index.arrays()
    assert set(arrays) == set(ARRAYS)
    assert arrays["nb_vecs"].dtype == np.int8 and arrays["nb_labels"].dtype == np.int8
    again = NeighbourIndex.from_arrays(arrays, index.params())
    np.testing.assert_array_equal(again.vecs, index.vecs)
    np.testing.assert_array_equal(again.features(emb[:20]), index.features(emb[:20]))


def test_bad_arrays_and_parameters_are_named(toy):
    _, _, index = toy
    arrays, params = index.arrays(), index.params()
    with pytest.raises(GuardError, match="lacks the neighbour arrays nb_scale"):
        NeighbourIndex.from_arrays({k: v for k, v in arrays.items() if k != "nb_scale"}, params, "m.npz")
    with pytest.raises(GuardError, match=r"m.npz: neighbour arrays are inconsistent.*int8 expected"):
        NeighbourIndex.from_arrays({**arrays, "nb_vecs": arrays["nb_vecs"].astype(np.float32)}, params, "m.npz")
    with pytest.raises(GuardError, match="inconsistent"):
        NeighbourIndex.from_arrays({**arrays, "nb_labels": arrays["nb_labels"][:-1]}, params)
    with pytest.raises(GuardError, match="missing or invalid"):
        NeighbourIndex.from_arrays(arrays, {"nearest": 5})
    with pytest.raises(GuardError, match="out of range"):
        NeighbourIndex.from_arrays(arrays, {**params, "nearest": params["candidates"] + 1})
    with pytest.raises(GuardError, match="out of range"):
        NeighbourIndex.from_arrays(arrays, {**params, "tau": 0})


def test_fit_rejects_bad_input():
    e = np.ones((10, 4), np.float32)
    with pytest.raises(ValueError, match="do not match"):
        NeighbourIndex.fit(e, np.zeros((9, 2), np.int8), dim=2)
    with pytest.raises(ValueError, match="too few"):
        NeighbourIndex.fit(e, np.zeros((10, 2), np.int8), dim=16)
    with pytest.raises(ValueError, match="labels must be"):
        NeighbourIndex.fit(e, np.full((10, 2), 2, np.int8), dim=2)


def test_training_indexes_originals_only_and_labels_what_each_head_knows(toy):
    from guard.screen.train import Example

    emb, _, _ = toy
    y = np.zeros((N, 6), np.float32)
    m = np.ones((N, 6), np.float32)
    y[:100, 0] = 1
    m[100:150, 2] = 0
    examples = [Example(f"p{i}", y[i], m[i], "corpus:x" if i % 5 else "corpus:x+leetspeak", f"g{i}") for i in range(N)]
    lab = neighbour_labels(y, m)
    assert (lab[:100, 0] == 1).all() and (lab[100:, 0] == 0).all() and (lab[100:150, 2] == -1).all()
    big = np.concatenate([emb, np.zeros((N, 40), np.float32)], 1)  # (the index needs more rows than axes)
    index, feats = fit_neighbours(examples, big, y, m, np.arange(N) % 5)
    assert len(index.vecs) == N - N // 5  # the obfuscated copies are not indexed
    assert feats.shape == (N, 18)


def test_shipped_model_has_an_index_of_its_training_prompts():
    model = LearnedModel.load(DEFAULT_MODEL)
    nb = model.neighbours
    assert nb is not None and model.layout.neighbours
    assert [model.names[i] for i in model.layout.neighbour_columns] == names(CATEGORIES)
    assert len(nb.vecs) == model.meta["neighbours"]["prompts"] > 20_000
    assert nb.n_heads == len(CATEGORIES)
    for h in range(len(CATEGORIES)):  # every head has positives and negatives to vote
        assert (nb.labels[:, h] == 1).sum() > 300 and (nb.labels[:, h] == 0).sum() > 10_000


def test_the_screen_reads_the_neighbours_of_what_it_screens(screen):
    scored = screen._score(["a nude woman lying on a sofa, oil painting", "a bowl of ramen on a wooden table"])
    x = featurize(screen, screen.learned.layout, scored, fill=screen.learned.mean)
    col = {n: i for i, n in enumerate(screen.learned.names)}
    explicit, ramen = x
    assert explicit[col["nb:frac:sexual"]] > 0.8
    assert explicit[col["nb:pos:sexual"]] > explicit[col["nb:neg:sexual"]]
    assert ramen[col["nb:frac:sexual"]] < 0.1
    assert ramen[col["nb:neg:sexual"]] > ramen[col["nb:pos:sexual"]]


def test_an_artifact_without_its_index_fails_to_load():
    with np.load(DEFAULT_MODEL.with_suffix(".npz")) as z:
        arrays = {k: z[k] for k in z.files if not k.startswith("nb_")}
    import json

    meta = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    with pytest.raises(GuardError, match="lacks the neighbour arrays"):
        LearnedModel(arrays, meta, "screen-v1.npz")


def test_a_reason_names_the_neighbours_in_numbers(screen):
    r = screen.screen("a nude woman lying on a sofa, oil painting")
    assert r.decision == "block"
    first = r.reasons[0]
    m = re.search(
        r"the labels of the nearest training prompts "
        r"\((\d+)% sexual, the nearest sexual one at cosine ([0-9.]+)\) \(\+",
        first,
    )
    assert m, first
    assert int(m.group(1)) >= 80 and float(m.group(2)) > 0.7
