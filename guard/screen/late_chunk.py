"""Late chunking: the segments of a prompt embedded from ONE encoder pass over the whole prompt.

The screen looks at a prompt whole and at its pieces (comma segments, word windows), so that one
phrase inside a long prompt is not averaged away. Encoding every piece on its own costs an encoder
pass per piece; here the prompt is encoded once, and a piece's vector is the pooled token states of
its own tokens in that pass (found through the tokenizer's character offsets), L2-normalised.

A text longer than the encoder's window (256 word pieces for MiniLM) is run in windows of tokens that
overlap by half; each token takes its state from the window in which it sits most centrally. The whole
text's own vector is that of the first window, as a truncating encoder sees it.

The functions here are numpy only and backend-neutral: the ONNX runtime
(:mod:`guard.screen.onnx_backend`) and the torch embedder (:mod:`guard.screen.embedder`) give them a
function that runs one window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

#: bump when the way spans are embedded changes (part of the screen's cache keys)
VIEWS_TAG = "late1"


@dataclass
class Tokens:
    """One text's encoding: ids and token type ids with the special tokens, each token's character
    span in the text, and which tokens are special (``[CLS]``, ``[SEP]``)."""

    ids: list[int]
    type_ids: list[int]
    offsets: list[tuple[int, int]]
    special: list[int]

    def without(self, drop_id: int | None) -> Tokens:
        """The same encoding without every token of id ``drop_id`` (the unknown token)."""
        if drop_id is None or drop_id not in self.ids:
            return self
        keep = [k for k, i in enumerate(self.ids) if i != drop_id]
        return Tokens(
            [self.ids[k] for k in keep],
            [self.type_ids[k] for k in keep],
            [self.offsets[k] for k in keep],
            [self.special[k] for k in keep],
        )

    @property
    def content(self) -> list[int]:
        """Positions of the tokens that are not special."""
        return [k for k, s in enumerate(self.special) if not s]


def windows(n_content: int, width: int) -> list[tuple[int, int]]:
    """``[start, end)`` ranges over ``n_content`` content tokens, each at most ``width`` long and
    overlapping the next by half (the last one ends at the end); one range when it all fits."""
    if n_content <= width:
        return [(0, n_content)]
    stride = max(1, width // 2)
    starts = list(range(0, n_content - width, stride)) + [n_content - width]
    return [(s, s + width) for s in starts]


def owner_window(n_content: int, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """For each content token, the window in which it is most central (ties: the earlier)."""
    pos = np.arange(n_content)[:, None]
    lo = np.asarray([s for s, _ in spans])[None, :]
    hi = np.asarray([e for _, e in spans])[None, :]
    inside = (pos >= lo) & (pos < hi)
    centrality = np.where(inside, np.minimum(pos - lo, hi - 1 - pos), -1)
    return centrality.argmax(axis=1)


#: runs one window: (ids, type ids) -> (token states (n, dim) float32, pooled unit vector (dim,))
RunWindow = Callable[[list[int], list[int]], tuple[np.ndarray, np.ndarray]]


def embed_views(
    tokens: Tokens,
    spans: Sequence[tuple[int, int]],
    run: RunWindow,
    *,
    max_length: int,
    dim: int,
    pooling: str = "mean",
) -> np.ndarray:
    """(1 + len(spans), dim) float32: the whole text's unit vector, then one per character span
    (``[start, end)`` into the text) pooled from the same pass. A span that covers no known token
    (only emoji, say), and every row of a text with no known token, is zero: similar to nothing."""
    out = np.zeros((1 + len(spans), dim), dtype=np.float32)
    content = tokens.content
    if not content:
        return out
    head = [k for k in range(content[0]) if tokens.special[k]]
    tail = [k for k in range(content[-1] + 1, len(tokens.ids)) if tokens.special[k]]
    width = max(1, max_length - len(head) - len(tail))
    wins = windows(len(content), width)
    states = np.empty((len(content), dim), dtype=np.float32)
    owner = owner_window(len(content), wins) if len(wins) > 1 else np.zeros(len(content), dtype=np.int64)
    for w, (a, b) in enumerate(wins):
        pos = head + content[a:b] + tail
        st, pooled = run([tokens.ids[k] for k in pos], [tokens.type_ids[k] for k in pos])
        if w == 0:
            out[0] = pooled
        mine = np.flatnonzero(owner[a:b] == w)
        states[a + mine] = st[len(head) + mine]
    if not spans:
        return out
    starts = np.asarray([tokens.offsets[k][0] for k in content])
    ends = np.asarray([tokens.offsets[k][1] for k in content])
    lo = np.asarray([s for s, _ in spans])[:, None]
    hi = np.asarray([e for _, e in spans])[:, None]
    member = (starts[None, :] < hi) & (ends[None, :] > lo)  # (n_spans, n_content): the token overlaps the span
    counts = member.sum(axis=1)
    if pooling == "max":
        for r in np.flatnonzero(counts):
            out[1 + r] = states[member[r]].max(axis=0)
    else:  # mean (the span has no [CLS] of its own: a CLS-pooled model is mean-pooled over spans)
        live = counts > 0
        out[1:][live] = (member[live].astype(np.float32) @ states) / counts[live, None]
    rows = out[1:]
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    np.divide(rows, norms, out=rows, where=norms > 0)
    return out
