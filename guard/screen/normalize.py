"""Text normalisation for the prompt screen.

v1 view: NFKC, casefold, invisible characters stripped (zero-width, Unicode tags, bidi controls,
soft hyphen, variation selectors), whitespace collapsed. The transforms that changed the text are
recorded: obfuscation is itself a signal.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

# zero-width and joiners, word joiner & invisible operators, BOM, soft hyphen, Mongolian vowel
# separator, combining grapheme joiner, Hangul fillers, bidi embeddings/overrides/isolates and marks,
# variation selectors, Unicode tag characters.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u180b-\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f\U000e0100-\U000e01ef]"
)
_WS = re.compile(r"\s+")


@dataclass
class Normalized:
    text: str
    transforms: list[str] = field(default_factory=list)


def strip_invisible(text: str) -> tuple[str, bool]:
    out = _INVISIBLE.sub("", text)
    return out, out != text


def normalize(text: str) -> Normalized:
    """NFKC + casefold + invisible characters stripped + whitespace collapsed."""
    transforms: list[str] = []
    t, had_invisible = strip_invisible(text)
    if had_invisible:
        transforms.append("invisible_chars")
    nfkc = unicodedata.normalize("NFKC", t)
    if nfkc != t:
        transforms.append("nfkc")
    folded = nfkc.casefold()
    # NFKC after casefold: casefolding can produce sequences that compose differently.
    folded = unicodedata.normalize("NFKC", folded)
    # Remove control characters (C0/C1 other than whitespace) that survive NFKC.
    cleaned = "".join(ch if (ch.isprintable() or ch.isspace()) else " " for ch in folded)
    if cleaned != folded:
        transforms.append("control_chars")
    collapsed = _WS.sub(" ", cleaned).strip()
    return Normalized(collapsed, transforms)


_SEG_SPLIT = re.compile(r"[,;|\n\r\t()\[\]{}]+|(?<=[a-z])\.\s+|\s[-–—:]\s")


def segments(text: str, *, window_words: int = 32, stride_words: int = 16, max_views: int = 256) -> list[str]:
    """Comma/semicolon separated pieces of a prompt, and sliding word windows over long pieces, so a
    single phrase inside a long prompt is screened on its own and is not averaged away."""
    out: list[str] = []
    seen: set[str] = set()

    def add(s: str) -> None:
        s = s.strip(" .!?'\"")
        if len(s) >= 3 and s not in seen:
            seen.add(s)
            out.append(s)

    pieces = [p for p in _SEG_SPLIT.split(text) if p and p.strip()]
    if len(pieces) > 1:
        for p in pieces:
            words = p.split()
            if len(words) <= window_words:
                add(p)
            else:
                for i in range(0, len(words) - window_words + stride_words, stride_words):
                    add(" ".join(words[i : i + window_words]))
            if len(out) >= max_views:
                break
    words = text.split()
    if len(words) > window_words:
        for i in range(0, len(words) - window_words + stride_words, stride_words):
            if len(out) >= max_views:
                break
            add(" ".join(words[i : i + window_words]))
    return out[:max_views]
