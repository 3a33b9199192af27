"""Output actions on images the tests draw: black, blur, pixelate (whole and boxes), placeholder,
flag; same type / size / dtype out as in; pixels outside the boxes untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from guard.errors import GuardInputError
from guard.output import actions as A
from guard.output.check import CheckVerdict, apply_action
from guard.policy.models import OutputActionsConfig
from output_tiny import drawing

BOX = (30, 20, 24, 16)  # x, y, w, h inside the 96x80 drawing


def inside_mask(shape, box, padding):
    ((x0, y0, x1, y1),) = A.padded_boxes([box], shape[1], shape[0], padding)
    m = np.zeros(shape[:2], bool)
    m[y0:y1, x0:x1] = True
    return m, (x0, y0, x1, y1)


def as_type(rgb: np.ndarray, kind: str):
    if kind == "pil":
        return Image.fromarray(rgb)
    if kind == "uint8":
        return rgb.copy()
    if kind == "float":
        return rgb.astype(np.float32) / 255.0
    if kind == "uint16":
        return rgb.astype(np.uint16) * 257
    if kind == "torch":
        return torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()
    raise AssertionError(kind)


def to_hwc_float(img) -> np.ndarray:
    if isinstance(img, Image.Image):
        return np.asarray(img, np.float64) / 255.0
    if isinstance(img, torch.Tensor):
        return img.permute(1, 2, 0).double().numpy()
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float64) / 65535.0
    return img.astype(np.float64)


KINDS = ["pil", "uint8", "float", "uint16", "torch"]


def same_form(a, b):
    assert type(a) is type(b)
    if isinstance(a, Image.Image):
        assert a.mode == b.mode and a.size == b.size
    else:
        assert a.shape == b.shape and a.dtype == b.dtype


@pytest.mark.parametrize("kind", KINDS)
def test_black(kind):
    img = as_type(drawing(0), kind)
    out = A.black(img)
    same_form(out, img)
    assert to_hwc_float(out).max() == 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_blur_whole_image_smooths_everything(kind):
    rgb = drawing(1)
    img = as_type(rgb, kind)
    out = A.blur(img, radius=0.1)
    same_form(out, img)
    before, after = to_hwc_float(img), to_hwc_float(out)
    # the checkerboard patch is gone: neighbouring pixels nearly equal
    patch = after[5:25, 5:25]
    assert np.abs(np.diff(patch, axis=1)).max() < 0.08
    assert np.abs(np.diff(before[5:25, 5:25], axis=1)).max() > 0.9
    assert abs(after.mean() - before.mean()) < 0.03  # a blur keeps the mean


@pytest.mark.parametrize("kind", KINDS)
def test_blur_boxes_changes_only_inside_padded_boxes(kind):
    rgb = drawing(2)
    rgb[20:36, 30:54] = np.where((np.indices((16, 24)).sum(0) % 2 == 0)[:, :, None], 255, 0)  # detail in the box
    img = as_type(rgb, kind)
    out = A.blur(img, [BOX], radius=0.2, padding=0.25)
    same_form(out, img)
    before, after = to_hwc_float(img), to_hwc_float(out)
    mask, (x0, y0, x1, y1) = inside_mask(rgb.shape, BOX, 0.25)
    assert (x0, y0, x1, y1) == (24, 16, 60, 40)
    np.testing.assert_array_equal(after[~mask], before[~mask])
    assert np.abs(np.diff(after[20:36, 30:54], axis=1)).max() < 0.2  # fine detail blurred away
    assert np.abs(after[mask] - before[mask]).max() > 0.3


@pytest.mark.parametrize("kind", KINDS)
def test_pixelate_boxes_gives_blocks_inside_and_nothing_outside(kind):
    rgb = drawing(3)
    img = as_type(rgb, kind)
    out = A.pixelate(img, [BOX], cells=4, padding=0.0)
    same_form(out, img)
    before, after = to_hwc_float(img), to_hwc_float(out)
    mask, (x0, y0, x1, y1) = inside_mask(rgb.shape, BOX, 0.0)
    np.testing.assert_array_equal(after[~mask], before[~mask])
    region = after[y0:y1, x0:x1]
    block = -(-min(y1 - y0, x1 - x0) // 4)  # 16 / 4 = 4 pixels
    for by in range(0, y1 - y0, block):
        for bx in range(0, x1 - x0, block):
            cell = region[by : by + block, bx : bx + block]
            assert np.ptp(cell, axis=(0, 1)).max() <= 1.0 / 255 + 1e-9  # one colour (up to rounding)
            src = before[y0 + by : y0 + by + block, x0 + bx : x0 + bx + block]
            np.testing.assert_allclose(cell[0, 0], src.mean(axis=(0, 1)), atol=1.0 / 255 + 1e-6)


def test_pixelate_whole_image_and_elongated_image():
    rgb = drawing(4, size=(200, 30))
    out = A.pixelate(rgb, cells=3)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.ptp(out[:10, :10].reshape(-1, 3), axis=0).max() == 0  # 10-pixel blocks


def test_boxes_are_padded_clipped_and_empty_ones_dropped():
    assert A.padded_boxes([(0, 0, 10, 10)], 20, 20, 0.5) == [(0, 0, 15, 15)]
    assert A.padded_boxes([(15, 15, 10, 10)], 20, 20, 0.0) == [(15, 15, 20, 20)]
    assert A.padded_boxes([(5, 5, 0, 0), (30, 30, 5, 5)], 20, 20, 0.0) == []
    img = drawing(5)
    np.testing.assert_array_equal(A.blur(img, []), img)  # no boxes: nothing to do


@pytest.mark.parametrize("kind", KINDS)
def test_placeholder_is_resized_and_converted(kind, tmp_path):
    ph = np.zeros((20, 30, 3), np.uint8)
    ph[:, :15] = (255, 0, 0)
    ph[:, 15:] = (0, 0, 255)
    path = tmp_path / "placeholder.png"
    Image.fromarray(ph).save(path)
    img = as_type(drawing(6), kind)
    out = A.replace(img, str(path))
    same_form(out, img)
    got = to_hwc_float(out)
    assert got.shape == (80, 96, 3)
    np.testing.assert_allclose(got[40, 5], [1, 0, 0], atol=0.02)  # left half red
    np.testing.assert_allclose(got[40, 90], [0, 0, 1], atol=0.02)  # right half blue


def test_placeholder_keeps_grey_and_alpha_channels(tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(path)
    grey = A.replace(Image.new("L", (40, 30)), path)
    assert grey.mode == "L" and np.asarray(grey).min() == 200
    rgba = A.replace(np.zeros((30, 40, 4), np.uint8), path)
    assert rgba.shape == (30, 40, 4) and (rgba[:, :, 3] == 255).all() and (rgba[:, :, :3] == 200).all()
    signed = A.replace(-np.ones((30, 40, 3), np.float32), path)  # a [-1, 1] image stays in that range
    np.testing.assert_allclose(signed, 200 / 255 * 2 - 1, atol=1e-6)


def test_apply_action_follows_the_verdict(tmp_path):
    rgb = drawing(7)
    settings = OutputActionsConfig(box_padding=0.0, pixelate_cells=4)
    flag = CheckVerdict(action="flag", flagged=["x"], settings=settings)
    assert apply_action(rgb, flag) is rgb
    assert apply_action(rgb, CheckVerdict()) is rgb
    v = CheckVerdict(action="pixelate_boxes", boxes=[BOX], settings=settings)
    out = apply_action(rgb, v)
    mask, _ = inside_mask(rgb.shape, BOX, 0.0)
    np.testing.assert_array_equal(out[~mask], rgb[~mask])
    assert not np.array_equal(out[mask], rgb[mask])
    t = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    assert apply_action(t, CheckVerdict(action="black")).abs().max() == 0
    # latents are zeroed whatever the action
    lat = torch.randn(4, 10, 12)
    v = CheckVerdict(action="blur", settings=settings)
    assert apply_action(lat, v, latent=True).abs().max() == 0 and v.action == "blank"
    assert "latent" in v.action_reason


def test_failed_action_blacks_out_and_says_so(tmp_path):
    v = CheckVerdict(action="placeholder", placeholder=str(tmp_path / "gone.png"), flagged=["x"])
    out = apply_action(drawing(8), v)
    assert out.max() == 0 and v.action == "blank"
    assert "placeholder failed" in v.action_reason and "fail closed" in v.action_reason


@pytest.mark.parametrize(
    "bad, needle",
    [
        (np.zeros((0, 5, 3), np.uint8), "zero size"),
        (np.zeros((2, 3, 4, 5)), "2-D or 3-D"),
        (np.zeros((5, 5, 7)), "channel"),
        ("img.png", "expected a PIL image"),
        (np.zeros((4, 4, 3), np.complex64), "dtype"),
    ],
)
def test_bad_images_are_refused_clearly(bad, needle):
    with pytest.raises(GuardInputError, match=needle):
        A.blur(bad)


def test_huge_image_is_processed_without_changing_it_outside_boxes():
    big = np.zeros((2000, 3000, 3), np.uint8)
    big[100:140, 100:140] = 255
    out = A.pixelate(big, [(100, 100, 40, 40)], cells=2, padding=0.0)
    assert out.shape == big.shape and out[:100].max() == 0 and out[100:140, 100:140].min() == 255
