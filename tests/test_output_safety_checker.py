"""The diffusers StableDiffusionSafetyChecker adapter on a tiny randomly initialised checker with
forced thresholds: agreement with diffusers' own forward, sensitivity, flag-only, batching, preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from guard.errors import GuardInputError
from guard.output.base import ModelLoadError
from guard.output.check import OutputChecker, apply_action
from guard.output.clip_preprocess import ClipPreprocess
from guard.output.safety_checker import SafetyCheckerClassifier
from guard.policy.models import OutputConfig
from output_tiny import drawing, save_tiny_safety_checker


@pytest.fixture(scope="module")
def checker_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("safety_checker")
    save_tiny_safety_checker(path)
    return path


@pytest.fixture(scope="module")
def clf(checker_dir):
    return SafetyCheckerClassifier(str(checker_dir), device="cpu")


@pytest.fixture()
def weights(clf):
    """Set the checker's concept / special thresholds for one test, restored afterwards."""
    m = clf.model
    saved = (m.concept_embeds_weights.data.clone(), m.special_care_embeds_weights.data.clone())

    def set_(concept=None, special=None):
        if concept is not None:
            m.concept_embeds_weights.data = torch.as_tensor(concept, dtype=torch.float32).expand(17).clone()
        if special is not None:
            m.special_care_embeds_weights.data = torch.as_tensor(special, dtype=torch.float32).expand(3).clone()

    set_(2.0, 2.0)  # nothing flags unless a test says otherwise
    yield set_
    m.concept_embeds_weights.data, m.special_care_embeds_weights.data = saved


IMAGES = [drawing(s, size) for s, size in zip(range(5), [(96, 80), (64, 64), (50, 120), (200, 90), (33, 33)])]


def diffusers_flags(clf, images):
    pixels = torch.from_numpy(np.stack([clf.preprocess(im) for im in images]))
    _, flags = clf.model(clip_input=pixels, images=[np.zeros((4, 4, 3)) for _ in images])
    return [bool(f) for f in flags]


def test_labels_and_score_structure(clf, weights):
    outs = clf.classify(IMAGES[:2])
    assert len(outs) == 2
    assert list(outs[0].scores) == [f"nsfw_concept_{i}" for i in range(17)] + [f"special_{i}" for i in range(3)]
    assert all(isinstance(v, float) and v < 0 for v in outs[0].scores.values())  # thresholds 2: far below


def test_flag_path_both_ways_agrees_with_diffusers(clf, weights):
    weights(concept=-1.0)  # cos - (-1) > 0: every concept over
    outs = clf.classify(IMAGES)
    assert all(max(o.scores[f"nsfw_concept_{i}"] for i in range(17)) > 0 for o in outs)
    assert diffusers_flags(clf, IMAGES) == [True] * len(IMAGES)
    weights(concept=2.0)
    outs = clf.classify(IMAGES)
    assert all(max(o.scores.values()) <= 0 for o in outs)
    assert diffusers_flags(clf, IMAGES) == [False] * len(IMAGES)


def mixed_threshold(clf):
    """A concept-0 threshold half-way between two images' cosines: one over, one under."""
    pix = np.stack([clf.preprocess(im) for im in IMAGES[:2]])
    _, cos = clf.embed_cosines(pix)
    hi = int(np.argmax(cos[:, 0]))
    return float(cos[:, 0].mean()), hi, float(abs(cos[0, 0] - cos[1, 0]))


def test_mixed_batch_and_sensitivity(clf, checker_dir, weights):
    thr, hi, gap = mixed_threshold(clf)
    assert gap > 0.01
    m = clf.model
    w = torch.full((17,), 2.0)
    w[0] = thr
    m.concept_embeds_weights.data = w
    mine = [o.scores["nsfw_concept_0"] > 0 for o in clf.classify(IMAGES[:2])]
    assert mine == diffusers_flags(clf, IMAGES[:2]) == [i == hi for i in range(2)]
    stricter = SafetyCheckerClassifier(model=m, sensitivity=-gap)  # lower thresholds: both flagged
    assert [o.scores["nsfw_concept_0"] > 0 for o in stricter.classify(IMAGES[:2])] == [True, True]
    looser = SafetyCheckerClassifier(model=m, sensitivity=+gap)
    assert [o.scores["nsfw_concept_0"] > 0 for o in looser.classify(IMAGES[:2])] == [False, False]
    base = clf.classify(IMAGES[:1])[0].scores["nsfw_concept_0"]
    assert stricter.classify(IMAGES[:1])[0].scores["nsfw_concept_0"] == pytest.approx(base + gap, abs=2e-3)


def test_special_care_hit_raises_concept_scores_by_001(clf, weights):
    base = clf.classify(IMAGES[:1])[0].scores
    weights(special=-1.0)
    after = clf.classify(IMAGES[:1])[0].scores
    assert after["special_0"] > 0
    for i in range(17):
        assert after[f"nsfw_concept_{i}"] == pytest.approx(base[f"nsfw_concept_{i}"] + 0.01, abs=1.1e-3)


def test_policy_thresholds_flag_only_and_actions(clf, checker_dir, weights):
    from guard.output import check

    weights(concept=-1.0)
    cfg = OutputConfig.model_validate(
        {
            "classifiers": [
                {"type": "safety_checker", "model_path": str(checker_dir), "device": "cpu", "flag_only": True}
            ]
        }
    )
    c = OutputChecker(cfg)
    assert c.classifiers[0][2].model is clf.model  # the model is loaded once per path
    v = c.check(IMAGES[:2])
    assert all(x.is_flagged and x.action == "flag" for x in v)
    assert v[0].flagged[0].startswith("safety_checker:nsfw_concept_0 ")
    assert apply_action(IMAGES[0], v[0]) is IMAGES[0]  # flag only: the image is returned as is
    # a per-label threshold above every margin (cos - 0 <= 1): not flagged; blank is the default action
    weights(concept=0.0)
    cfg = OutputConfig.model_validate(
        {
            "classifiers": [
                {
                    "type": "safety_checker",
                    "model_path": str(checker_dir),
                    "device": "cpu",
                    "thresholds": {f"nsfw_concept_{i}": 1.0 for i in range(17)},
                }
            ]
        }
    )
    assert not any(x.is_flagged for x in OutputChecker(cfg).check(IMAGES[:2]))
    cfg = OutputConfig.model_validate(
        {"classifiers": [{"type": "safety_checker", "model_path": str(checker_dir), "device": "cpu"}]}
    )
    weights(concept=-1.0)
    v = OutputChecker(cfg).check(IMAGES[:1])[0]
    assert v.action == "blank" and apply_action(IMAGES[0], v).max() == 0
    assert len(check._CLASSIFIERS) >= 1


def test_batched_and_single_agree(clf, weights):
    weights(concept=0.0)
    single = SafetyCheckerClassifier(model=clf.model, batch_size=1)
    a = [o.scores for o in clf.classify(IMAGES)]
    b = [o.scores for o in single.classify(IMAGES)]
    for x, y in zip(a, b):
        assert max(abs(x[k] - y[k]) for k in x) <= 1.0001e-3  # rounded to 3 decimals like diffusers


def test_preprocessing_matches_transformers_clip_processor():
    from transformers import CLIPImageProcessorPil

    proc = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    mine = ClipPreprocess(size=32, crop=32)
    for im in (drawing(0, (96, 80)), drawing(1, (40, 130)), drawing(2, (32, 32))):
        theirs = proc(images=Image.fromarray(im), return_tensors="np")["pixel_values"][0]
        np.testing.assert_allclose(mine(im), theirs, atol=2e-2)
        assert np.abs(mine(im) - theirs).mean() < 2e-3


def test_preprocessor_config_is_read(tmp_path):
    import json

    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "size": {"shortest_edge": 40},
                "crop_size": {"height": 36, "width": 36},
                "image_mean": [0.5] * 3,
                "image_std": [0.5] * 3,
            }
        )
    )
    p = ClipPreprocess.for_model(32, tmp_path)
    assert (p.size, p.crop, p.mean) == (40, 36, (0.5, 0.5, 0.5))
    assert p(drawing(0)).shape == (3, 36, 36)
    assert ClipPreprocess.for_model(24, tmp_path / "nothing").crop == 24


def test_odd_images_are_handled_and_bad_ones_refused(clf, weights):
    rgb = drawing(3)
    odd = [
        rgb[:, :, 0],
        np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]),
        rgb.astype(np.uint16) * 257,
        Image.fromarray(rgb).convert("L"),
        torch.from_numpy(rgb).permute(2, 0, 1).float() / 255,
        rgb[:3, :2],
    ]
    outs = clf.classify(odd)
    assert len(outs) == len(odd)
    ref = clf.classify([rgb])[0].scores
    for o in outs[1:3] + outs[4:5]:  # opaque RGBA, 16-bit, float tensor: the same picture
        assert max(abs(o.scores[k] - ref[k]) for k in ref) <= 2e-3
    for bad, needle in [
        ([np.zeros((0, 4, 3), np.uint8)], "zero size"),
        ([np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (9000, 8000, 3))], "exceeds"),
        (rgb, r"\[image\]"),
    ]:
        with pytest.raises(GuardInputError, match=needle):
            clf.classify(bad)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="cannot load"):
        SafetyCheckerClassifier(str(tmp_path / "no_such_checker"), device="cpu")
    with pytest.raises(GuardInputError, match="sensitivity"):
        SafetyCheckerClassifier(model=object(), sensitivity=3)
