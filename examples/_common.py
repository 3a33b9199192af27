"""Shared helpers for the examples: load a real model when given, else the embedded tiny one."""

from __future__ import annotations

import argparse

import numpy as np
import PIL.Image


def parse(description: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument(
        "--model", default=None, help="hub id or local path (default: the embedded tiny model, random weights, offline)"
    )
    ap.add_argument("--policy", default="default")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=None)
    return ap.parse_args()


def demo_image(size: int = 64) -> PIL.Image.Image:
    """A synthetic input picture: a sky gradient over a green field."""
    y = np.linspace(0, 1, size)[:, None, None]
    sky = np.concatenate([0.3 + 0.4 * (1 - y), 0.5 + 0.3 * (1 - y), np.ones_like(y)], axis=2)
    img = np.repeat(sky, size, axis=1)
    img[size * 2 // 3 :] = [0.2, 0.6, 0.2]
    return PIL.Image.fromarray((img * 255).astype("uint8"))


def show(out) -> None:
    print(out.guard_report)
    print("nsfw_content_detected:", out.nsfw_content_detected)
