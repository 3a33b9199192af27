"""The CLIP zero-shot classifier on a tiny random CLIPModel saved to disk and loaded by path."""

from __future__ import annotations

import functools
import operator

import numpy as np
import pytest
import torch

from guard.errors import GuardInputError
from guard.output.base import ModelLoadError
from guard.output.check import OutputChecker
from guard.output.clip_zero_shot import ClipZeroShotClassifier
from guard.policy.models import OutputConfig
from output_tiny import drawing, save_tiny_clip

CONCEPTS = {"mouse": ["a cartoon mouse", "a mouse with big round ears"], "duck": ["a duck in a sailor hat"]}
NEUTRAL = ["a photo", "a landscape", "a red car"]
IMAGES = [drawing(s, size) for s, size in zip(range(5), [(96, 80), (64, 64), (50, 120), (200, 90), (33, 33)])]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_clip")
    save_tiny_clip(path)
    return path


@pytest.fixture(scope="module")
def softmax_clf(clip_dir):
    return ClipZeroShotClassifier(str(clip_dir), concepts=CONCEPTS, neutral=NEUTRAL, device="cpu")


@pytest.fixture(scope="module")
def reference(clip_dir, softmax_clf):
    """CLIPModel's own logits_per_image for every phrase (concepts first, then neutral)."""
    model, tok = softmax_clf.model, softmax_clf.tokenizer
    enc = tok(softmax_clf.phrases, padding=True, return_tensors="pt")
    pix = torch.from_numpy(np.stack([softmax_clf.preprocess(im) for im in IMAGES]))
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=pix)
    return out.logits_per_image.numpy(), float(model.logit_scale.detach().exp())


def test_softmax_scores_match_clip_logits(softmax_clf, reference):
    logits, _ = reference
    outs = softmax_clf.classify(IMAGES)
    assert softmax_clf.labels == ("mouse", "duck")
    assert softmax_clf.phrases[:3] == functools.reduce(operator.iadd, CONCEPTS.values(), [])
    for o, row in zip(outs, logits):
        p = np.exp(row - row.max())
        p /= p.sum()
        assert o.scores["mouse"] == pytest.approx(p[0] + p[1], abs=1e-5)
        assert o.scores["duck"] == pytest.approx(p[2], abs=1e-5)
        assert 0.0 <= o.scores["mouse"] + o.scores["duck"] <= 1.0


def test_cosine_mode_is_best_phrase_cosine(clip_dir, softmax_clf, reference):
    logits, scale = reference
    clf = ClipZeroShotClassifier(str(clip_dir), concepts=CONCEPTS, neutral=NEUTRAL, mode="cosine", device="cpu")
    assert clf.model is softmax_clf.model  # one model per path
    for o, row in zip(clf.classify(IMAGES), logits):
        cos = row / scale
        assert o.scores["mouse"] == pytest.approx(max(cos[0], cos[1]), abs=1e-5)
        assert o.scores["duck"] == pytest.approx(cos[2], abs=1e-5)


def test_batched_and_single_agree(clip_dir, softmax_clf):
    single = ClipZeroShotClassifier(
        model=softmax_clf.model,
        tokenizer=softmax_clf.tokenizer,
        concepts=CONCEPTS,
        neutral=NEUTRAL,
        batch_size=1,
        device="cpu",
    )
    for a, b in zip(softmax_clf.classify(IMAGES), single.classify(IMAGES)):
        assert max(abs(a.scores[k] - b.scores[k]) for k in a.scores) < 1e-5


def test_policy_per_label_thresholds_flag_both_ways(clip_dir, softmax_clf):
    scores = [o.scores for o in softmax_clf.classify(IMAGES[:2])]
    lo = min(s["mouse"] for s in scores)
    hi = max(s["mouse"] for s in scores)
    assert hi > lo
    mid = (lo + hi) / 2

    def run(thresholds, **extra):
        cfg = OutputConfig.model_validate(
            {
                "classifiers": [
                    {
                        "type": "clip_zero_shot",
                        "model_path": str(clip_dir),
                        "device": "cpu",
                        "concepts": CONCEPTS,
                        "neutral": NEUTRAL,
                        "thresholds": thresholds,
                        **extra,
                    }
                ]
            }
        )
        return OutputChecker(cfg).check(IMAGES[:2])

    v = run({"mouse": mid, "duck": 1.0})
    assert [x.is_flagged for x in v] == [s["mouse"] >= mid for s in scores]
    flagged = next(x for x in v if x.is_flagged)
    assert flagged.flagged[0].startswith("clip_zero_shot:mouse ") and flagged.action == "blank"
    assert not any(x.is_flagged for x in run({"mouse": 1.0, "duck": 1.0}))
    assert all(x.is_flagged for x in run({"mouse": 0.0}, action="flag"))  # duck at the default 0.5
    assert set(v[0].scores["clip_zero_shot"]) == {"mouse", "duck"}


def test_odd_and_bad_images(softmax_clf):
    rgb = drawing(9)
    outs = softmax_clf.classify(
        [rgb[:, :, :1], np.dstack([rgb, rgb[:, :, :1]]), rgb.astype(np.uint16) * 257, rgb[:1, :1]]
    )
    assert len(outs) == 4
    with pytest.raises(GuardInputError, match="zero size"):
        softmax_clf.classify([np.zeros((5, 0), np.uint8)])
    with pytest.raises(GuardInputError, match="exceeds"):
        softmax_clf.classify([np.broadcast_to(np.zeros((1, 1), np.uint8), (10000, 7000))])


def test_load_errors_and_bad_settings(tmp_path, softmax_clf):
    with pytest.raises(ModelLoadError, match="cannot load a CLIPModel"):
        ClipZeroShotClassifier(str(tmp_path / "none"), concepts=CONCEPTS, device="cpu")
    with pytest.raises(GuardInputError, match="mode"):
        ClipZeroShotClassifier(
            model=softmax_clf.model, tokenizer=softmax_clf.tokenizer, concepts=CONCEPTS, mode="argmax"
        )
    with pytest.raises(GuardInputError, match="tokenizer"):
        ClipZeroShotClassifier(model=softmax_clf.model, concepts=CONCEPTS)
