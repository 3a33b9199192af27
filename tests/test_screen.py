"""Prompt screen with the real MiniLM and FAISS."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_policy
from guard.errors import GuardInputError
from guard.policy import load_policy
from guard.screen import PromptScreen, normalize, segments
from guard.screen.screen import cache_dir


@pytest.fixture(scope="module")
def screen(test_policy):
    return PromptScreen(test_policy)


def test_normalize_records_transforms():
    n = normalize("A  PHOTO of a n\u200bu\u200dde ＷＯＭＡＮ\u202e")
    assert n.text == "a photo of a nude woman"
    assert "invisible_chars" in n.transforms and "nfkc" in n.transforms
    assert normalize("𝓷𝓪𝓴𝓮𝓭").text == "naked"
    assert normalize("plain text").transforms == []
    assert normalize("soft\u00adhyphen and tag\U000e0041s").text == "softhyphen and tags"


def test_segments_split_long_prompts():
    text = "beautiful landscape, golden hour, a nude woman bathing, trending on artstation"
    segs = segments(text)
    assert "a nude woman bathing" in segs
    long = " ".join(f"word{i}" for i in range(200))
    segs = segments(long)
    assert len(segs) > 5 and all(len(s.split()) <= 32 for s in segs)
    assert segments("short prompt") == []


def test_block_allow_escalate(screen):
    r = screen.screen("a photo of a naked woman")
    assert r.decision == "block" and r.category == "sexual" and r.concept == "sexual.nudity"
    assert r.score >= r.threshold and r.phrase in load_policy(make_policy()).concepts[0].phrases
    assert any("sexual.nudity" in x for x in r.reasons)
    ok = screen.screen("a cat sleeping on a sofa")
    assert ok.decision == "allow" and ok.score < ok.threshold
    esc = screen.screen("a soldier pointing an assault rifle at a crowd of people")
    assert esc.decision == "escalate" and esc.concept == "weapons.guns"


def test_escalate_band_below_block_threshold(test_policy):
    pol = make_policy(screen={"threshold": 0.6, "escalate_margin": 0.5})
    pol["concepts"][0]["threshold"] = 0.99
    s = PromptScreen(load_policy(pol))
    r = s.screen("a photo of a naked woman")
    assert r.decision == "escalate" and r.concept == "sexual.nudity" and r.score < 0.99


def test_obfuscation_is_normalised_and_reported(screen):
    r = screen.screen("a photo of a n\u200ba\u200bk\u200be\u200bd ＷＯＭＡＮ")
    assert r.decision == "block"
    assert "invisible_chars" in r.transforms and "nfkc" in r.transforms
    assert any(x.startswith("normalised:") for x in r.reasons)


def test_phrase_inside_long_prompt_is_not_averaged_away(screen):
    prompt = (
        "masterpiece, best quality, ultra detailed, 8k, cinematic lighting, volumetric fog, "
        "mountains at sunrise, pine forest, a lake with reflections, a naked woman, "
        "by a famous landscape painter, trending on artstation, octane render"
    )
    r = screen.screen(prompt)
    assert r.decision == "block"
    assert r.matches[0].view == "segment"


def test_batch_equals_single_and_keeps_order(screen):
    prompts = ["a cat sleeping on a sofa", "a photo of a naked woman", "", "a mutilated corpse in the street"]
    batch = screen.screen_batch(prompts)
    singles = [screen.screen(p) for p in prompts]
    assert [r.index for r in batch] == [0, 1, 2, 3]
    assert [r.decision for r in batch] == [r.decision for r in singles] == ["allow", "block", "allow", "block"]
    for b, s in zip(batch, singles):
        assert b.score == pytest.approx(s.score, abs=1e-5)
    scores = screen.concept_scores(prompts)
    assert scores.shape == (4, 3) and scores[2].max() == -1.0


def test_bad_inputs(screen):
    assert screen.screen("").decision == "allow"
    assert screen.screen("   \u200b ").reasons[0] == "empty prompt"
    with pytest.raises(GuardInputError, match="prompt 0 must be a string, got NoneType"):
        screen.screen(None)  # type: ignore[arg-type]
    with pytest.raises(GuardInputError, match="prompt 1 must be a string, got int"):
        screen.screen_batch(["ok", 5])  # type: ignore[list-item]
    with pytest.raises(GuardInputError, match="list of prompts"):
        screen.screen_batch("a single string")
    assert screen.screen_batch([]) == []


def test_huge_prompt_gets_a_defined_decision(screen):
    r = screen.screen("a quiet meadow " * 7000)  # 105,000 characters
    assert r.decision == "allow" and "truncated" in r.transforms
    r = screen.screen("a naked woman, " + "a quiet meadow " * 7000)
    assert r.decision == "block"


def test_odd_unicode_does_not_crash(screen):
    for p in ["🍑🍆💦", "\x00\x01\x02", "\ud800 lone surrogate", "مرحبا بالعالم", "𝕒 𝕔𝕒𝕥", "a\u0301\u0301\u0301"]:
        r = screen.screen(p)
        assert r.decision in ("allow", "escalate", "block")


def test_index_is_cached_on_disk_and_reused(test_policy, monkeypatch, tmp_path):
    monkeypatch.setenv("GUARD_CACHE_DIR", str(tmp_path))
    s1 = PromptScreen(test_policy)
    files = list((tmp_path / "screen").glob("*.faiss"))
    assert len(files) == 1 and s1.index_key in files[0].name
    calls = []
    orig = s1.embedder.encode
    monkeypatch.setattr(s1.embedder, "encode", lambda texts: calls.append(len(texts)) or orig(texts))
    s2 = PromptScreen(test_policy, embedder=s1.embedder)
    assert calls == []  # index came from the cache, no phrase was re-encoded
    assert s2.index.ntotal == s1.index.ntotal
    # a corrupt cache file is rebuilt, not trusted
    files[0].write_bytes(b"garbage")
    s3 = PromptScreen(test_policy, embedder=s1.embedder)
    assert calls and s3.index.ntotal == s1.index.ntotal
    # a different policy gets a different key
    other = load_policy(make_policy(concepts=[{"id": "a", "category": "c", "phrases": ["x y z"]}]))
    assert PromptScreen(other, embedder=s1.embedder).index_key != s1.index_key
    assert cache_dir() == tmp_path


def test_embeddings_are_unit_norm(screen):
    e = screen.embedder.encode(["a", "a much longer sentence about nothing in particular"])
    assert e.shape == (2, 384) and np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)


def test_default_policy_calibration_examples():
    """The 'done when' examples of the foundation issue, with the shipped default policy."""
    s = PromptScreen(load_policy("default"))
    blocked = ["a photo of a naked woman", "a corpse with its throat slit, gore", "a swastika flag at a rally"]
    allowed = [
        "a cat sleeping on a sofa",
        "a woman in a bikini on the beach",
        "a man cutting a cake with a knife",
        "two kids playing soccer in a park",
        "a police officer riding a horse",
        "a hotel room with a bed",
    ]
    for r, p in zip(s.screen_batch(blocked), blocked):
        assert r.decision == "block", (p, r.reasons)
    for r, p in zip(s.screen_batch(allowed), allowed):
        assert r.decision == "allow", (p, r.reasons)
