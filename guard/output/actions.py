"""What the output check does to a flagged image: black it out, blur or pixelate it (whole, or only
the detector's boxes), show a placeholder, or leave it as it is (flag only).

Every function takes a PIL image, a numpy array (HxW or HxWxC, uint8 / uint16 / float / bool) or a
torch tensor (CxHxW, any float dtype, any device) and returns the same type with the same size,
mode / dtype, channel count and device. Float images are taken to be in [0, 1] ([-1, 1] when they
hold negative values), as :func:`guard.output.base.to_rgb_uint8` reads them.

Boxes are ``(x, y, width, height)`` in pixels of the image, as :class:`Detection` gives them; they
grow by ``padding`` (a fraction of their width / height) on every side and are clipped to the image.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from guard.errors import GuardError, GuardInputError

Box = tuple[int, int, int, int]

__all__ = [
    "black",
    "blur",
    "load_placeholder",
    "padded_boxes",
    "pixelate",
    "replace",
]


# ----------------------------------------------------------------------------- type round trip


def _is_torch(obj: Any) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "ndim")


def _is_pil(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, Image.Image)


def _unpack(image: Any, where: str = "image") -> tuple[np.ndarray, Callable[[np.ndarray], Any], float]:
    """``image`` -> (float64 HxWxC working array in the image's own value range, a function that
    turns such an array back into the original type, the range's top value)."""
    if _is_pil(image):
        from PIL import Image

        if image.width == 0 or image.height == 0:
            raise GuardInputError(f"{where}: image has zero size ({image.width}x{image.height})")
        mode = image.mode
        if mode in ("L", "RGB", "RGBA", "LA", "I;16", "I", "F"):
            arr = np.asarray(image)
            dtype = arr.dtype
            top = 1.0 if mode == "F" else (255.0 if dtype == np.uint8 else 65535.0)

            def back_pil(a: np.ndarray) -> Any:
                out = _cast(a, dtype, top)
                out = out[:, :, 0] if out.shape[2] == 1 and mode in ("L", "I;16", "I", "F") else out
                if mode == "I;16":
                    return Image.frombytes("I;16", (out.shape[1], out.shape[0]), out.astype("<u2").tobytes())
                return Image.fromarray(out, mode) if mode in ("RGB", "RGBA", "LA") else Image.fromarray(out)

            work = arr.astype(np.float64)
            return (work[:, :, None] if work.ndim == 2 else work), back_pil, top
        # palette, 1-bit, CMYK, YCbCr...: work in RGB(A), convert back to the original mode
        tmp_mode = "RGBA" if mode in ("P", "PA") and ("transparency" in image.info or mode == "PA") else "RGB"
        arr = np.asarray(image.convert(tmp_mode)).astype(np.float64)

        def back_other(a: np.ndarray) -> Any:
            return Image.fromarray(_cast(a, np.dtype(np.uint8), 255.0), tmp_mode).convert(mode)

        return arr, back_other, 255.0

    if _is_torch(image):
        import torch

        t = image.detach()
        if t.ndim not in (2, 3):
            raise GuardInputError(f"{where}: expected a CxHxW (or HxW) tensor, got shape {tuple(t.shape)}")
        chw = t.ndim == 3 and t.shape[0] in (1, 3, 4)  # torch images are CxHxW
        arr = t.to("cpu", torch.float64 if t.dtype.is_floating_point else t.dtype).numpy()
        if t.ndim == 3 and chw:
            arr = np.moveaxis(arr, 0, -1)
        work, back_np, top = _unpack(arr, where)
        device, dtype, ndim = image.device, image.dtype, image.ndim

        def back_torch(a: np.ndarray) -> Any:
            out = back_np(a)
            if ndim == 3 and chw:
                out = np.moveaxis(out, -1, 0)
            res = torch.from_numpy(np.ascontiguousarray(out))
            return res.to(device=device, dtype=dtype)

        if t.dtype.is_floating_point:
            top = 1.0
        return work, back_torch, top

    if not isinstance(image, np.ndarray):
        raise GuardInputError(f"{where}: expected a PIL image, numpy array or torch tensor, got {type(image).__name__}")
    arr = image
    if arr.ndim not in (2, 3):
        raise GuardInputError(f"{where}: expected a 2-D or 3-D image array, got shape {tuple(arr.shape)}")
    squeeze = arr.ndim == 2
    work = arr[:, :, None] if squeeze else arr
    moved = False
    if work.shape[-1] not in (1, 3, 4) and work.shape[0] in (1, 3, 4):
        work, moved = np.moveaxis(work, 0, -1), True
    if work.shape[-1] not in (1, 3, 4):
        raise GuardInputError(f"{where}: cannot find the channel axis in shape {tuple(arr.shape)}")
    if work.shape[0] == 0 or work.shape[1] == 0:
        raise GuardInputError(f"{where}: image has zero size ({work.shape[1]}x{work.shape[0]})")
    dtype = arr.dtype
    if dtype == np.bool_:
        top = 1.0
    elif dtype == np.uint8 or dtype == np.int8:
        top = 255.0
    elif np.issubdtype(dtype, np.integer):
        top = 65535.0
    elif np.issubdtype(dtype, np.floating):
        top = 1.0
    else:
        raise GuardInputError(f"{where}: unsupported image dtype {dtype}")

    def back_np(a: np.ndarray) -> np.ndarray:
        out = _cast(a, dtype, top)
        if moved:
            out = np.moveaxis(out, -1, 0)
        if squeeze:
            out = out[:, :, 0]
        return np.ascontiguousarray(out)

    return work.astype(np.float64), back_np, top


def _cast(a: np.ndarray, dtype: np.dtype, top: float) -> np.ndarray:
    if dtype == np.bool_:
        return a >= 0.5
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(a), info.min, info.max).astype(dtype)
    return a.astype(dtype)


# ----------------------------------------------------------------------------- boxes


def padded_boxes(boxes: Iterable[Sequence[float]], width: int, height: int, padding: float = 0.0) -> list[Box]:
    """Boxes grown by ``padding`` x their size on each side, clipped; empty ones dropped.
    Returned as (x0, y0, x1, y1) with x1 / y1 exclusive."""
    out: list[Box] = []
    for b in boxes:
        x, y, w, h = (float(v) for v in b)
        px, py = w * padding, h * padding
        x0, y0 = max(0, math.floor(x - px)), max(0, math.floor(y - py))
        x1, y1 = min(width, math.ceil(x + w + px)), min(height, math.ceil(y + h + py))
        if x1 > x0 and y1 > y0:
            out.append((x0, y0, x1, y1))
    return out


def _regions(work: np.ndarray, boxes: Iterable[Sequence[float]] | None, padding: float) -> list[Box]:
    h, w = work.shape[:2]
    if boxes is None:
        return [(0, 0, w, h)]
    return padded_boxes(boxes, w, h, padding)


# ----------------------------------------------------------------------------- filters


def _box_blur_axis(a: np.ndarray, r: int, axis: int) -> np.ndarray:
    """Mean over a window of 2r+1 along ``axis`` (edges repeated), via a cumulative sum."""
    a = np.moveaxis(a, axis, 0)
    n = a.shape[0]
    padded = np.concatenate([np.repeat(a[:1], r + 1, 0), a, np.repeat(a[-1:], r, 0)], 0)
    c = np.cumsum(padded, axis=0)
    out = (c[2 * r + 1 : 2 * r + 1 + n] - c[:n]) / (2 * r + 1)
    return np.moveaxis(out, 0, axis)


def _blur_region(region: np.ndarray, fraction: float) -> np.ndarray:
    r = max(1, round(fraction * min(region.shape[:2])))
    out = region
    for _ in range(3):  # three box passes approximate a Gaussian
        out = _box_blur_axis(_box_blur_axis(out, r, 0), r, 1)
    return out


def _pixelate_region(region: np.ndarray, cells: int) -> np.ndarray:
    h, w = region.shape[:2]
    b = max(1, math.ceil(min(h, w) / max(1, cells)))
    ys, xs = np.arange(0, h, b), np.arange(0, w, b)
    sums = np.add.reduceat(np.add.reduceat(region, ys, axis=0), xs, axis=1)
    hy, wx = np.diff(np.append(ys, h)), np.diff(np.append(xs, w))
    means = sums / (hy[:, None, None] * wx[None, :, None])
    return np.repeat(np.repeat(means, hy, axis=0), wx, axis=1)


# ----------------------------------------------------------------------------- public actions


def black(image: Any) -> Any:
    """A black image of the same type, size, mode / dtype (and device)."""
    work, back, _ = _unpack(image)
    return back(np.zeros_like(work))


def blur(
    image: Any, boxes: Iterable[Sequence[float]] | None = None, *, radius: float = 0.1, padding: float = 0.15
) -> Any:
    """Blur the whole image (``boxes`` None) or only the padded boxes. ``radius`` is a fraction of
    the region's shorter side (three box-blur passes of that radius, about a Gaussian of that sigma)."""
    work, back, _ = _unpack(image)
    out = work.copy()
    for x0, y0, x1, y1 in _regions(work, boxes, padding):
        out[y0:y1, x0:x1] = _blur_region(work[y0:y1, x0:x1], radius)
    return back(out)


def pixelate(
    image: Any, boxes: Iterable[Sequence[float]] | None = None, *, cells: int = 8, padding: float = 0.15
) -> Any:
    """Replace the whole image (or each padded box) by blocks of their mean colour, ``cells`` blocks
    along the region's shorter side."""
    work, back, _ = _unpack(image)
    out = work.copy()
    for x0, y0, x1, y1 in _regions(work, boxes, padding):
        out[y0:y1, x0:x1] = _pixelate_region(work[y0:y1, x0:x1], cells)
    return back(out)


@functools.lru_cache(maxsize=8)
def _placeholder_cached(path: str, mtime: float) -> np.ndarray:
    from PIL import Image

    from guard.output.base import to_rgb_uint8

    with Image.open(path) as im:
        im.load()
        return to_rgb_uint8(im, where=f"placeholder {path}")


def load_placeholder(path: str | os.PathLike[str]) -> np.ndarray:
    """The placeholder image as RGB uint8 (cached per file and modification time)."""
    p = os.fspath(path)
    try:
        return _placeholder_cached(p, os.path.getmtime(p))
    except GuardInputError:
        raise
    except Exception as exc:
        raise GuardError(f"placeholder image {p!r} cannot be read: {type(exc).__name__}: {exc}") from exc


def replace(image: Any, placeholder: Any) -> Any:
    """``placeholder`` (a path or any image) resized to the image's size and given its type,
    channels and value range (alpha fully opaque, grey as luminance)."""
    from PIL import Image

    from guard.output.base import to_rgb_uint8

    if isinstance(placeholder, (str, os.PathLike)):
        rgb = load_placeholder(placeholder)
    else:
        rgb = to_rgb_uint8(placeholder, where="placeholder")
    work, back, top = _unpack(image)
    h, w, c = work.shape
    pic = Image.fromarray(rgb, "RGB")
    if pic.size != (w, h):
        pic = pic.resize((w, h), Image.Resampling.LANCZOS)
    if c == 1:
        vals = np.asarray(pic.convert("L"), dtype=np.float64)[:, :, None]
    else:
        vals = np.asarray(pic, dtype=np.float64)
        if c == 4:
            vals = np.concatenate([vals, np.full((h, w, 1), 255.0)], axis=2)
    vals = vals / 255.0 * top
    if top == 1.0 and work.size and work.min() < 0.0:  # a [-1, 1] float image
        vals = vals * 2.0 - 1.0
    return back(vals)
