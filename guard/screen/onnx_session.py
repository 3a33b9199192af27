"""The ONNX primitives the screen's runtime (:mod:`guard.screen.onnx_backend`) and its export
(:mod:`guard.screen.onnx_export`) share: the export format, the tokenizer, padding and batching, sessions,
the cache path. A leaf: it imports neither of them."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guard.errors import GuardError

logger = logging.getLogger(__name__)

#: bump when the exported graph changes (inputs, outputs, pooling), so old cached files are re-exported.
#: 2: inputs ``position_ids`` and ``block_ids`` (several texts packed in one row), output ``token_states``
#: (the fused graph, ``export_onnx(fuse=True)``, has the same inputs and outputs: metadata ``graph`` says which;
#: it is not the default, see onnx_export's docstring)
EXPORT_FORMAT = "2"
OPSET = 17
MIN_COSINE = 0.999
#: the probe check of an int8 graph (against the fp32 torch probe vector)
MIN_COSINE_INT8_PROBE = 0.97
#: the probe check of a blockwise int8 graph (``quantize="int8-blocks"``)
MIN_COSINE_INT8_BLOCKS_PROBE = 0.995
#: the quantisations an OnnxEmbedder offers: None (fp32), dynamic int8, blockwise int8
QUANTIZATIONS = (None, "int8", "int8-blocks")
PROBE_TEXT = "guard onnx probe: a watercolour painting of a lighthouse at dusk"
#: sentences the fresh export is checked on against the torch path (plus PROBE_TEXT)
VERIFY_TEXTS = [
    "",
    "a",
    "a photo of a cat sitting on a windowsill",
    "Ein Foto von einem Hund im Park, hyperrealistisch, 8k",
    "𝕒 𝕔𝕒𝕥 🍑🍆 naïve café, ＷＯＭＡＮ",
    "masterpiece, best quality, " + "intricate detail, " * 150,  # > 256 word pieces: truncated
]
_META_PREFIX = "guard."


class OnnxUnavailable(GuardError):
    """The ONNX fast path cannot be used (the message says why)."""


def onnx_cache_path(fingerprint: str) -> Path:
    """Where the exported graph of the model with this fingerprint is cached."""
    from guard.paths import cache_dir

    return cache_dir() / "onnx" / f"{fingerprint}.onnx"


# ------------------------------------------------------------------------------------ tokenising


class _Tokenizer:
    """The model's fast tokenizer: ``tokenizers`` on ``tokenizer.json`` (no transformers import),
    else transformers' AutoTokenizer. Not thread-safe: callers hold a lock."""

    def __init__(self, path: Path, max_length: int):
        self.max_length = max_length
        tj = path / "tokenizer.json"
        self._hf = None
        if tj.is_file():
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_file(str(tj))
            self._tok.no_padding()  # tokenizer.json may pin padding to a fixed length; we pad per batch
            self._tok.enable_truncation(max_length)
            pad = (self._tok.padding or {}).get("pad_id")
            self.pad_id = int(pad) if pad is not None else int(self._tok.token_to_id("[PAD]") or 0)
            unk_token = getattr(self._tok.model, "unk_token", None) or "[UNK]"
            unk = self._tok.token_to_id(unk_token)
            self.unk_id = None if unk is None else int(unk)
            self.n_special = self._tok.num_special_tokens_to_add(False)
        else:  # pragma: no cover - every sentence-transformers model ships a tokenizer.json today
            from transformers import AutoTokenizer

            self._hf = AutoTokenizer.from_pretrained(str(path))
            self.pad_id = int(self._hf.pad_token_id or 0)
            self.unk_id = self._hf.unk_token_id
            self.n_special = self._hf.num_special_tokens_to_add(False)

    def encode(self, texts: Sequence[str]) -> list[tuple[list[int], list[int]]]:
        """(input ids, token type ids) of each text, truncated, unpadded."""
        if self._hf is not None:  # pragma: no cover
            enc = self._hf(list(texts), truncation=True, max_length=self.max_length)
            tt = enc.get("token_type_ids") or [[0] * len(ids) for ids in enc["input_ids"]]
            return list(zip(enc["input_ids"], tt))
        return [(e.ids, e.type_ids) for e in self._tok.encode_batch(list(texts))]


def drop_unknown(
    encs: Sequence[tuple[list[int], list[int]]], unk_id: int | None, n_special: int
) -> tuple[list[tuple[list[int], list[int]]], np.ndarray]:
    """Remove the unknown-token id from each encoding; also return which encodings are left with
    nothing but the special tokens (``[CLS] [SEP]``).

    Why: every character the vocabulary lacks (emoji, Thai, a 100-letter word) becomes the same
    ``[UNK]`` id, so "🍑🍆", "ภาพถ่ายของแมว" and a Japanese bank phrase all embed to one and the same
    vector: cosine 1.0 between unrelated texts. Dropping it leaves only pieces that carry meaning;
    a text with none gets the zero vector (cosine 0 to everything), see ``encode``."""
    if unk_id is None:
        return list(encs), np.zeros(len(encs), dtype=bool)
    out, empty = [], np.zeros(len(encs), dtype=bool)
    for r, (ids, tt) in enumerate(encs):
        if unk_id in ids:
            keep = [k for k, i in enumerate(ids) if i != unk_id]
            ids, tt = [ids[k] for k in keep], [tt[k] for k in keep]
        empty[r] = len(ids) <= n_special
        out.append((ids, tt))
    return out, empty


def _pad(encs: Sequence[tuple[list[int], list[int]]], pad_id: int, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Right-pad a batch into the int64 feeds the graph takes."""
    n, width = len(encs), max(len(ids) for ids, _ in encs)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    tt = np.zeros((n, width), dtype=np.int64)
    for r, (i, t) in enumerate(encs):
        ids[r, : len(i)] = i
        mask[r, : len(i)] = 1
        tt[r, : len(t)] = t
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}
    if "position_ids" in names:
        feeds["position_ids"] = np.broadcast_to(np.arange(width, dtype=np.int64), (n, width))
        feeds["block_ids"] = np.zeros((n, width), dtype=np.int64)
    return {k: feeds[k] for k in names}


#: default size of each OnnxEmbedder's LRU cache of text embeddings
CACHE_SIZE = 20_000
#: a batch is closed before the next (longer) text would make it less than this fraction real tokens
MIN_FILL = 0.5


def _batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices in ascending token length, cut into batches of at most ``batch_size`` that are at
    least ``MIN_FILL`` real tokens once padded (a few long prompts no longer pad a batch of short ones
    to 256)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    out: list[list[int]] = []
    cur: list[int] = []
    real = 0
    for i in order:
        n = lengths[i]
        if cur and (len(cur) >= batch_size or (real + n) < MIN_FILL * n * (len(cur) + 1)):
            out.append(cur)
            cur, real = [], 0
        cur.append(i)
        real += n
    if cur:
        out.append(cur)
    return out


def _run_sorted(session, tok: _Tokenizer, encs, batch_size: int, dim: int) -> np.ndarray:
    """Encode pre-tokenised texts in token-length-sorted batches (little padding), original order."""
    names = [i.name for i in session.get_inputs()]
    out = np.empty((len(encs), dim), dtype=np.float32)
    for idx in _batches([len(ids) for ids, _ in encs], batch_size):
        feeds = _pad([encs[i] for i in idx], tok.pad_id, names)
        out[idx] = session.run(["embeddings"], feeds)[0]
    return out


#: most tokens in one packed row (several short texts side by side, see ``run_packed``)
PACK_TOKENS = 256


def pack(lengths: Sequence[int], limit: int = PACK_TOKENS) -> list[list[int]]:
    """Indices of texts of these token lengths in rows of at most ``limit`` tokens, in order (a text
    longer than ``limit`` gets a row of its own)."""
    rows: list[list[int]] = []
    used = 0
    for i, n in enumerate(lengths):
        if rows and used + n <= limit:
            rows[-1].append(i)
            used += n
        else:
            rows.append([i])
            used = n
    return rows


def run_packed(
    session, names: Sequence[str], encs: Sequence[tuple[list[int], list[int]]], pooling: str = "mean"
) -> np.ndarray:
    """Pooled unit vectors of pre-tokenised texts run side by side in ONE row (no padding): each
    text is a block that attends only to itself, with its own positions, so its vector is the one it
    gets alone (to float rounding; an int8 graph's activation scale is the row's). Each block's token
    states are pooled as the graph pools a whole row (``pooling``: mean, cls or max): the feeds of
    :func:`run_packed_batch` for a single row, which has no padding."""
    return run_packed_batch(session, names, [encs], pooling=pooling)[0]  # one row: nothing to pad


def _pool_blocks(states: np.ndarray, lens: Sequence[int], pooling: str) -> np.ndarray:
    """Unit vectors of the blocks of one packed row: ``states`` (tokens, dim) holds blocks of ``lens``
    tokens side by side from its start (any padding after them is ignored)."""
    lens = list(lens)
    starts = np.cumsum([0] + lens[:-1])
    if pooling == "cls":
        out = states[starts]
    elif pooling == "max":
        out = np.stack([states[a : a + n].max(axis=0) for a, n in zip(starts, lens)])
    else:
        used = int(sum(lens))
        member = np.zeros((len(lens), used), dtype=np.float32)
        member[np.repeat(np.arange(len(lens)), lens), np.arange(used)] = 1.0
        out = (member @ states[:used]) / np.asarray(lens, dtype=np.float32)[:, None]
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


#: most tokens in one row when the views of several prompts are packed together (``run_packed_batch``):
#: shorter rows than ``PACK_TOKENS``, as every block's attention is computed over its whole row, and many
#: of them in one call (the weights are read once per call, not once per prompt)
BATCH_PACK_TOKENS = 128


def pack_tight(lengths: Sequence[int], limit: int = BATCH_PACK_TOKENS) -> list[list[int]]:
    """Indices of texts of these token lengths in rows of at most ``limit`` tokens, longest first, each
    into the first row it fits (first-fit decreasing: little padding when the rows are stacked in one
    batch); a text longer than ``limit`` gets a row of its own."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows: list[list[int]] = []
    free: list[int] = []
    for i in order:
        n = lengths[i]
        for r, f in enumerate(free):
            if n <= f:
                rows[r].append(i)
                free[r] -= n
                break
        else:
            rows.append([i])
            free.append(max(0, limit - n))
    return rows


def run_packed_batch(
    session,
    names: Sequence[str],
    rows: Sequence[Sequence[tuple[list[int], list[int]]]],
    pad_id: int = 0,
    pooling: str = "mean",
) -> list[np.ndarray]:
    """Several packed rows (each a list of pre-tokenised texts, as :func:`run_packed` takes) in ONE
    call, right-padded to the longest row: per row, its texts' unit vectors. A padding token is a block
    of its own that no real token attends to (attention mask 0), so each text's vector is the one it
    gets alone, to float rounding."""
    lens = [[len(e[0]) for e in row] for row in rows]
    width = max(sum(ls) for ls in lens)
    n = len(rows)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    tt = np.zeros((n, width), dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    pos = np.zeros((n, width), dtype=np.int64)
    blocks = np.full((n, width), -1, dtype=np.int64)
    for r, (row, ls) in enumerate(zip(rows, lens)):
        used = sum(ls)
        ids[r, :used] = np.concatenate([np.asarray(e[0], dtype=np.int64) for e in row])
        tt[r, :used] = np.concatenate([np.asarray(e[1], dtype=np.int64) for e in row])
        mask[r, :used] = 1
        pos[r, :used] = np.concatenate([np.arange(k, dtype=np.int64) for k in ls])
        blocks[r, :used] = np.repeat(np.arange(len(ls), dtype=np.int64), ls)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt, "position_ids": pos, "block_ids": blocks}
    states = session.run(["token_states"], {k: feeds[k] for k in names})[0]
    return [_pool_blocks(states[r], ls, pooling) for r, ls in enumerate(lens)]


def _run_each(session, encs, dim: int, pmap=map) -> np.ndarray:
    """Encode pre-tokenised texts one at a time (no padding): the result of a text does not depend
    on the other texts of the call. Needed for int8 graphs, whose activations are quantised with one
    scale per call; for fp32 it matches :func:`_run_sorted` to float rounding. ``pmap``: a map
    function (a thread pool's, to run texts side by side)."""
    names = [i.name for i in session.get_inputs()]
    out = np.empty((len(encs), dim), dtype=np.float32)

    def one(enc):
        return session.run(["embeddings"], _pad([enc], 0, names))[0][0]

    for r, row in enumerate(pmap(one, encs)):
        out[r] = row
    return out


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(1)


# ------------------------------------------------------------------------------------ sessions


def choose_providers(device: str = "cpu") -> list[Any]:
    """onnxruntime providers: ``$GUARD_ONNX_PROVIDERS`` (comma-separated) when set, else the CUDA
    provider first when this onnxruntime build has it (onnxruntime-gpu), then the CPU provider. A
    ``device`` of ``cuda:N`` picks GPU N."""
    import onnxruntime as ort

    avail = ort.get_available_providers()
    env = os.environ.get("GUARD_ONNX_PROVIDERS", "").strip()
    if env:
        chosen = [p.strip() for p in env.split(",") if p.strip() in avail]
        return chosen or ["CPUExecutionProvider"]
    providers: list[Any] = []
    if "CUDAExecutionProvider" in avail:
        dev_id = 0
        if device.startswith("cuda:"):
            try:
                dev_id = int(device.split(":", 1)[1])
            except ValueError:
                pass
        providers.append(("CUDAExecutionProvider", {"device_id": dev_id}))
    providers.append("CPUExecutionProvider")
    return providers


def _num_threads() -> int:
    env = os.environ.get("GUARD_ONNX_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    if "torch" in sys.modules:  # follow torch's choice when it is loaded anyway; never import it here
        try:
            return max(1, int(sys.modules["torch"].get_num_threads()))
        except Exception:  # pragma: no cover
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def make_session(
    model: str | bytes | os.PathLike,
    device: str = "cpu",
    providers: list[Any] | None = None,
    threads: int | None = None,
):
    """An onnxruntime InferenceSession with full graph optimisation and the intra-op thread pool
    sized like torch's (or ``threads``); ``session.run`` is thread-safe."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads or _num_threads()
    so.inter_op_num_threads = 1
    # worker threads sleep between runs instead of spinning: at batch 1 a run is a few milliseconds and
    # spinning threads take the cores from the caller's own work (and from other processes)
    spin = os.environ.get("GUARD_ONNX_SPIN", "0").strip()
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin == "1" else "0")
    so.log_severity_level = 3  # errors only: a missing GPU falls back to the CPU provider quietly
    src = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(src, sess_options=so, providers=providers or choose_providers(device))


def _meta(session) -> dict[str, str]:
    m = session.get_modelmeta().custom_metadata_map
    return {k[len(_META_PREFIX) :]: v for k, v in m.items() if k.startswith(_META_PREFIX)}


# ------------------------------------------------------------------------------------ embedder
