"""Tests of guard.output.nudenet against the real 320n.onnx and the nudenet package itself.

All images are drawn here (solid colours, gradients, noise, random ellipses); the only file read
from disk is the model shipped inside the nudenet package.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from guard.errors import GuardError, GuardInputError
from guard.output.base import ClassifierOutput, Detection
from guard.output.nudenet import (
    ModelLoadError,
    NudeNetClassifier,
    _iou_greedy_nms,
    default_model_path,
)

cv2 = pytest.importorskip("cv2")
ort = pytest.importorskip("onnxruntime")
nudenet_module = pytest.importorskip("nudenet.nudenet")


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def clf() -> NudeNetClassifier:
    return NudeNetClassifier(providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def clf_single() -> NudeNetClassifier:
    return NudeNetClassifier(providers=["CPUExecutionProvider"], batch_size=1)


@pytest.fixture(scope="module")
def package_detector():
    return nudenet_module.NudeDetector()


def blobs(seed: int, size: tuple[int, int] = (256, 256), n: int = 12) -> Image.Image:
    """An RGB image (size = width, height) of random coloured ellipses on a random background."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(n):
        cx, cy = int(rng.integers(0, size[0])), int(rng.integers(0, size[1]))
        rx, ry = (int(v) for v in rng.integers(5, 80, 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=colour)
    return img


def gradient(h: int = 180, w: int = 240) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w]
    red, green = xs * 255 // max(w - 1, 1), ys * 255 // max(h - 1, 1)
    return np.stack([red, green, np.full_like(xs, 128)], -1).astype(np.uint8)


def noise(h: int = 200, w: int = 150, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def as_package_dicts(out: ClassifierOutput) -> list[dict]:
    return [{"class": d.label, "score": d.score, "box": list(d.box)} for d in out.detections]


def assert_same_detections(mine: list[dict], theirs: list[dict], tol: float = 1e-5) -> None:
    assert [d["class"] for d in mine] == [d["class"] for d in theirs]
    assert [d["box"] for d in mine] == [d["box"] for d in theirs]
    np.testing.assert_allclose([d["score"] for d in mine], [d["score"] for d in theirs], atol=tol)


# ------------------------------------------------------------------------------- structure


def test_labels_and_name_match_package(clf):
    package_labels = tuple(getattr(nudenet_module, "__labels"))
    assert clf.name == "nudenet"
    assert len(clf.labels) == 18
    assert clf.labels == package_labels


def test_default_model_is_the_packaged_one():
    path = default_model_path()
    assert path.name == "320n.onnx" and path.is_file()
    assert path.parent == Path(nudenet_module.__file__).parent


def test_model_input_has_dynamic_batch(clf):
    shape = clf._session.get_inputs()[0].shape
    assert len(shape) == 4 and shape[1] == 3
    assert not isinstance(shape[0], int)  # dynamic: a whole batch goes through one run


def test_output_structure(clf):
    images = [np.zeros((64, 64, 3), np.uint8), gradient(), noise(), blobs(7)]
    outs = clf.classify(images)
    assert len(outs) == len(images)
    for img, out in zip(images, outs):
        assert isinstance(out, ClassifierOutput)
        assert list(out.scores) == list(clf.labels)
        for score in out.scores.values():
            assert isinstance(score, float) and 0.0 <= score <= 1.0
        w, h = img.size if isinstance(img, Image.Image) else (img.shape[1], img.shape[0])
        for det in out.detections:
            assert isinstance(det, Detection) and det.label in clf.labels
            assert 0.25 < det.score <= 1.0
            # a detection's label score can only be at least as high as the detection
            assert out.scores[det.label] >= det.score - 1e-6
            x, y, bw, bh = det.box
            assert all(isinstance(v, int) for v in det.box)
            assert 0 <= x <= w and 0 <= y <= h and x + bw <= w and y + bh <= h
        out.to_dict()  # serialisable


def test_empty_input_gives_empty_list(clf):
    assert clf.classify([]) == []
    assert clf.classify(()) == []
    assert clf.classify(np.zeros((0, 32, 32, 3), np.uint8)) == []


def test_batched_and_single_agree(clf, clf_single):
    images = [blobs(s, size) for s, size in zip(range(6), [(256, 256), (300, 200), (200, 320)] * 2)]
    images += [gradient(), noise(), np.full((90, 400, 3), (200, 150, 120), np.uint8)]
    one_by_one = clf_single.classify(images)
    batched = clf.classify(images)  # 9 images with batch_size 8: one full chunk and a partial
    assert len(one_by_one) == len(batched) == len(images)
    for a, b in zip(one_by_one, batched):
        for label in clf.labels:
            assert abs(a.scores[label] - b.scores[label]) < 1e-4
        assert_same_detections(as_package_dicts(a), as_package_dicts(b), tol=1e-4)


def test_4d_batch_array_is_accepted(clf):
    stack = np.stack([noise(64, 64, seed=s) for s in range(3)])
    from_array = clf.classify(stack)
    from_list = clf.classify(list(stack))
    assert [o.scores for o in from_array] == [o.scores for o in from_list]


def test_concurrent_use_from_threads(clf):
    images = [blobs(1), gradient()]
    expected = clf.classify(images)
    results: list = [None] * 4
    errors: list = []

    def work(k: int) -> None:
        try:
            results[k] = clf.classify(images)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for res in results:
        for a, b in zip(res, expected):
            assert max(abs(a.scores[k] - b.scores[k]) for k in clf.labels) < 1e-4


# ------------------------------------------------------------------- agreement with package


@pytest.mark.parametrize(
    "size",
    [(256, 256), (300, 200), (200, 320), (320, 320), (640, 480), (960, 333), (100, 60)]
    + [(3000, 41), (7, 900)],  # very elongated: only part of the padding is materialised
)
def test_preprocessing_matches_package(clf, size):
    rgb = np.asarray(blobs(3, size, n=4))
    blob, width, height, side = clf._preprocess(rgb)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    theirs, _, _, x_pad, y_pad, w0, h0 = nudenet_module._read_image(bgr)
    assert (width, height) == (w0, h0) == size
    assert side == w0 + x_pad == h0 + y_pad
    assert blob.dtype == np.float32 and blob.shape == theirs.shape[1:] == (3, 320, 320)
    np.testing.assert_allclose(blob, theirs[0], atol=1e-6)


def test_detections_match_package_detect(clf, package_detector):
    sizes = [(256, 256), (300, 200), (200, 300)]
    images = [blobs(seed, sizes[seed % 3]) for seed in (0, 1, 2, 7)]  # 1 and 7 give detections
    outs = clf.classify(images)
    found = 0
    for img, out in zip(images, outs):
        # the package reads files with cv2.imread, i.e. as BGR arrays
        theirs = package_detector.detect(np.ascontiguousarray(np.asarray(img)[:, :, ::-1]))
        assert_same_detections(as_package_dicts(out), theirs)
        found += len(theirs)
    assert found > 0, "no detections at all: the comparison would be vacuous"


def test_matches_package_reading_an_encoded_file(clf, package_detector):
    """``detect(bytes)`` decodes like ``detect(path)`` does (cv2, BGR): an RGB image given to
    guard must score as the same picture read from a file by the package."""
    img = blobs(7)  # has a detection with the current model
    ok, png = cv2.imencode(".png", np.asarray(img)[:, :, ::-1])
    assert ok
    theirs = package_detector.detect(png.tobytes())
    mine = as_package_dicts(clf.classify([img])[0])
    assert theirs, "expected the package to find something in this drawing"
    assert_same_detections(mine, theirs)


def test_scores_are_max_over_all_anchors(clf, package_detector):
    images = [blobs(4, (300, 200)), gradient(), noise()]
    outs = clf.classify(images)
    for img, out in zip(images, outs):
        bgr = np.ascontiguousarray(np.asarray(img)[:, :, ::-1])
        blob = nudenet_module._read_image(bgr)[0]
        raw = package_detector.onnx_session.run(None, {package_detector.input_name: blob})[0][0]
        expected = raw[4:].max(axis=1)
        np.testing.assert_allclose([out.scores[k] for k in clf.labels], expected, atol=1e-5)
        assert max(out.scores.values()) > 0.0


@pytest.mark.parametrize("width,height", [(256, 256), (640, 480), (300, 500), (120, 90)])
def test_decoding_and_nms_match_package_postprocess(clf, width, height):
    """Feed a synthetic raw output (many overlapping boxes, scores around the 0.2 / 0.25
    cutoffs) to the package's postprocess and to ours: a non-vacuous check of box scaling,
    clipping, cutoff and NMS."""
    rng = np.random.default_rng(width * 1000 + height)
    n_anchors, n_cls = 2100, 18
    raw = np.zeros((4 + n_cls, n_anchors), np.float32)
    centres = rng.uniform(-20, 340, (12, 2))  # clusters, some partly outside the input
    pick = rng.integers(0, len(centres), n_anchors)
    raw[0:2] = (centres[pick] + rng.normal(0, 12, (n_anchors, 2))).T
    raw[2:4] = rng.uniform(4, 160, (2, n_anchors))
    raw[4:] = rng.uniform(0, 0.2, (n_cls, n_anchors))
    hot = rng.choice(n_anchors, 400, replace=False)
    raw[4 + rng.integers(0, n_cls, 400), hot] = rng.uniform(0.18, 0.99, 400)
    raw[4 + 3, hot[:5]] = np.float32(0.25)  # exactly at the NMS score cutoff: dropped
    side = max(width, height)
    x_pad, y_pad = side - width, side - height
    theirs = nudenet_module._postprocess(
        [raw[None]], x_pad, y_pad, side / width, side / height, width, height, 320, 320
    )
    mine = clf._decode(raw, width, height, side)
    candidates = int(((raw[4:].max(axis=0)) > 0.25).sum())
    assert 0 < len(theirs) < candidates  # something found, something suppressed
    assert_same_detections(as_package_dicts(mine), theirs, tol=0.0)
    np.testing.assert_allclose([mine.scores[k] for k in clf.labels], raw[4:].max(axis=1))


def test_nms_matches_opencv():
    rng = np.random.default_rng(1)
    for _trial in range(20):
        n = int(rng.integers(1, 60))
        corners, sizes = rng.uniform(0, 100, (n, 2)), rng.uniform(0, 60, (n, 2))
        boxes = np.concatenate([corners, sizes], 1).astype(np.float32)
        boxes[rng.random(n) < 0.1, 2] = 0.0  # some empty boxes
        if n > 3:
            boxes[1] = boxes[0]  # a duplicate
        scores = rng.uniform(0.0, 1.0, n).astype(np.float32)
        if n > 4:
            scores[2] = scores[3]  # a tie
        ref = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), 0.25, 0.45)
        expected = [int(i) for i in np.asarray(ref).ravel()]
        assert _iou_greedy_nms(boxes, scores, 0.25, 0.45) == expected


# -------------------------------------------------------------------------------- input types


def test_input_types_give_the_same_result(clf):
    torch = pytest.importorskip("torch")
    rgb = np.asarray(blobs(7, (200, 160)))
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    rgba = Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), "RGBA")
    images = [
        Image.fromarray(rgb),  # PIL RGB
        rgba,  # PIL RGBA, opaque
        rgb,  # numpy uint8 HWC
        (rgb.astype(np.float32) / 255.0).transpose(2, 0, 1),  # float CHW in [0, 1]
        torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1),  # torch CHW
        rgb.astype(np.uint16) * 257,  # 16-bit
        Image.fromarray(grey),  # PIL L
        np.repeat(grey[:, :, None], 3, axis=2),  # the same grey as RGB
    ]
    outs = clf.classify(images)
    reference = outs[0]
    for out in outs[1:6]:
        assert max(abs(out.scores[k] - reference.scores[k]) for k in clf.labels) < 1e-5
        assert as_package_dicts(out) == as_package_dicts(reference)
    assert max(abs(outs[6].scores[k] - outs[7].scores[k]) for k in clf.labels) < 1e-5


def test_translucent_rgba_and_one_channel_arrays(clf):
    rgba = np.dstack([noise(80, 60), np.full((80, 60), 128, np.uint8)])
    one_channel = [np.zeros((1, 50, 70), np.float32), noise()[:, :, :1]]
    outs = clf.classify([Image.fromarray(rgba, "RGBA"), rgba, *one_channel])
    assert len(outs) == 4
    assert max(abs(outs[0].scores[k] - outs[1].scores[k]) for k in clf.labels) < 1e-5


# --------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "images, needle",
    [
        ([np.zeros((0, 10, 3), np.uint8)], "zero size"),
        ([np.zeros((1, 2, 8, 8, 3), np.uint8)], "shape"),
        (np.zeros((1, 2, 8, 8, 3), np.uint8), "shape"),
        ("cat.png", "list of images"),
        ([np.zeros((8, 8, 3), np.uint8), None], "image 1"),
        ([np.full((3, 8, 8), np.nan, np.float32)], "NaN"),
        ([np.zeros((8, 8, 7), np.uint8)], "channel"),
        (42, "list of images"),
    ],
)
def test_bad_inputs_raise_guard_input_error(clf, images, needle):
    with pytest.raises(GuardInputError, match=needle):
        clf.classify(images)


@pytest.mark.parametrize(
    "single",
    [Image.new("RGB", (16, 16)), np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), np.uint8)],
)
def test_single_image_must_be_wrapped_in_a_list(clf, single):
    with pytest.raises(GuardInputError, match=r"list of images.*\[image\]"):
        clf.classify(single)


def test_single_torch_tensor_must_be_wrapped_in_a_list(clf):
    torch = pytest.importorskip("torch")
    with pytest.raises(GuardInputError, match="list of images"):
        clf.classify(torch.zeros(3, 16, 16))


# ------------------------------------------------------------------------- model and providers


def test_missing_model_path_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "model.onnx"
    with pytest.raises(GuardError, match="nowhere") as info:
        NudeNetClassifier(model_path=missing)
    assert isinstance(info.value, ModelLoadError)
    assert str(missing) in str(info.value)


def test_corrupt_model_file_raises_guard_error(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not an onnx model")
    with pytest.raises(ModelLoadError) as info:
        NudeNetClassifier(model_path=str(bad))
    assert str(bad) in str(info.value)


def test_default_provider_is_available_and_logged(caplog):
    with caplog.at_level(logging.INFO, logger="guard.output"):
        clf = NudeNetClassifier()
    assert clf.provider in ort.get_available_providers()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert clf.provider == "CPUExecutionProvider"
    lines = [r for r in caplog.records if r.name.startswith("guard.output") and "nudenet" in r.getMessage()]
    assert len(lines) == 1 and clf.provider in lines[0].getMessage()


def test_explicit_cpu_provider_works(clf):
    assert clf.provider == "CPUExecutionProvider"
    assert len(clf.classify([gradient(64, 64)])) == 1


def test_unknown_provider_is_refused():
    with pytest.raises(GuardInputError, match="NoSuchExecutionProvider"):
        NudeNetClassifier(providers=["NoSuchExecutionProvider"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 0},
        {"batch_size": 2.5},
        {"detection_threshold": 1.5},
        {"detection_threshold": "high"},
    ],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(GuardInputError):
        NudeNetClassifier(**kwargs)


# ------------------------------------------------------------- providers, policy, boxes, big images


def test_provider_choice_follows_what_onnxruntime_offers():
    from guard.output.nudenet import choose_providers

    available = ort.get_available_providers()
    chosen = choose_providers(None)
    assert chosen and set(chosen) <= set(available)
    assert chosen[0] == ("CUDAExecutionProvider" if "CUDAExecutionProvider" in available else "CPUExecutionProvider")
    assert choose_providers("CPUExecutionProvider") == ["CPUExecutionProvider"]
    with pytest.raises(GuardInputError, match="available"):
        choose_providers([])


def test_policy_providers_and_batch_size_reach_the_classifier():
    from guard.output.check import build_classifier
    from guard.policy.models import NudeNetConfig

    clf = build_classifier(NudeNetConfig(providers=["CPUExecutionProvider"], batch_size=3))
    assert clf.provider == "CPUExecutionProvider" and clf.batch_size == 3
    assert (
        build_classifier(NudeNetConfig(providers=["CPUExecutionProvider"], batch_size=3, thresholds={"FACE_MALE": 0.1}))
        is clf
    )  # thresholds: same session


def test_pixelate_boxes_on_a_real_detection(clf):
    from guard.output.check import OutputChecker, apply_action
    from guard.policy.models import OutputConfig

    img = np.asarray(blobs(7))  # the model finds something in this drawing
    det = clf.classify([img])[0].detections[0]
    cfg = OutputConfig.model_validate(
        {
            "classifiers": [{"thresholds": {det.label: 0.2}, "action": "pixelate_boxes"}],
            "actions": {"box_padding": 0.0, "pixelate_cells": 2},
        }
    )
    v = OutputChecker(cfg, classifiers=[clf]).check([img])[0]
    assert v.action == "pixelate_boxes" and tuple(det.box) in v.boxes
    out = apply_action(img, v)
    inside = np.zeros(img.shape[:2], bool)
    for x, y, w, h in v.boxes:
        inside[y : y + h, x : x + w] = True
    assert np.array_equal(out[~inside], img[~inside]) and not np.array_equal(out[inside], img[inside])


def test_huge_images_are_refused_before_any_copy(clf):
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (10_000, 7_000, 3))  # 70 Mpx, no memory
    with pytest.raises(GuardInputError, match="exceeds"):
        clf.classify([huge])
    big_ok = np.zeros((3000, 2000, 3), np.uint8)  # 6 Mpx is fine
    assert len(clf.classify([big_ok])) == 1
