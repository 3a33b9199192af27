"""Encoder speed: the screen's MiniLM sentence encoder in its ONNX forms, side by side in one run.

    python benchmarks/encoder_speed.py [--data ../shared/data/prompts/i2p.csv] [--n 300] [--agree-n 2000]
                                       [--threads 2] [--quick]

Graphs (all exported here, in this process, from the embedded all-MiniLM-L6-v2; nothing is read from
or written to the cache):

- ``unfused_fp32``: the graph as ``torch.onnx.export`` traces it (export format 2, the previous default),
- ``fused_fp32``: the same fused by onnxruntime's transformer optimiser (Attention with the 3-D block
  mask, SkipLayerNormalization, BiasGelu, EmbedLayerNormalization; ``export_onnx(fuse=True)``),
- ``fused_int8``: ``fused_fp32`` with dynamic int8 MatMuls and QAttention,
- ``unfused_int8``: dynamic int8 on the unfused graph (opt-in ``onnx-int8``),
- ``int8_blocks``: blockwise int8 on the unfused graph (``MatMulNBits``, one scale per 32 weights and per
  32 activations of a row; opt-in ``onnx-int8-blocks``).

Measured on I2P prompts (``--data``: a CSV with a ``prompt`` column), every variant on the same prompt
before the next prompt (so that a load change on the shared machine hits every variant alike):

1. batch 1, the whole prompt (what the screen encodes for every prompt): p50 / p95 ms per prompt;
2. batch 1, a prompt's views packed in one call (the text and its comma segments / word windows, as the
   screen builds them): p50 / p95 ms;
3. batch 64: prompts/s, token-length-sorted padded batches ("sorted", as ``OnnxEmbedder`` runs fp32 and
   blockwise int8) and one text per call on a thread pool of single-threaded sessions ("each", as it runs
   dynamic int8);
4. agreement: fused vs unfused fp32 (single texts, padded batches, packed views; cosine), and int8
   vs fp32 per view over ``--agree-n`` prompts, each prompt's views packed in one call as the screen
   runs them (min / mean / 0.1 % quantile cosine);
5. session settings on the default (unfused fp32) graph: intra-op threads 1 vs 2, spinning, the memory arena,
   IO binding;
6. truncation: the whole prompt capped at 77 / 128 tokens (CLIP's text encoder sees 77) against the
   full 256, and the same with the rest of the text as 77-token windows packed into the same call.

The last line is ``RESULT key=value ...``; the first lines name the machine load (``uptime``).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guard.screen.model_files import direct_config, resolve_model_path  # noqa: E402
from guard.screen.normalize import normalize, segments  # noqa: E402
from guard.screen.onnx_session import _batches, _cosines, _pad, _Tokenizer, drop_unknown, pack  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "prompts" / "i2p.csv"


def load_prompts(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [(r.get("prompt") or "").strip() for r in csv.DictReader(fh)]
    return list(dict.fromkeys(p for p in rows if p))


def load_avg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:  # pragma: no cover - not Linux
        return "?"


def session(data: bytes, threads: int, *, spin: bool = False, arena: bool = True):
    """An onnxruntime CPU session as ``make_session`` builds it, with the settings under study exposed."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.enable_cpu_mem_arena = arena
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.log_severity_level = 3
    return ort.InferenceSession(data, sess_options=so, providers=["CPUExecutionProvider"])


def feeds_of(names, encs) -> dict:
    return _pad(encs, 0, names)


def run_one(sess, names, enc) -> np.ndarray:
    return sess.run(["embeddings"], feeds_of(names, [enc]))[0][0]


def run_packed_rows(sess, names, encs, pooling="mean") -> np.ndarray:
    """A prompt's views packed in rows of at most PACK_TOKENS tokens (as ``OnnxEmbedder.encode_views``)."""
    from guard.screen.onnx_session import run_packed

    out = np.zeros((len(encs), 384), dtype=np.float32)
    for row in pack([len(e[0]) for e in encs]):
        out[row] = run_packed(sess, names, [encs[i] for i in row], pooling)
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def ms(xs: list[float], key: str | None = None) -> str:
    out = f"p50 {1e3 * statistics.median(xs):6.2f} ms  p95 {1e3 * pct(xs, 0.95):6.2f} ms"
    if key is not None and CPU.get(key):
        c = CPU[key]
        out += f"   (CPU p50 {1e3 * statistics.median(c):6.2f} ms  p95 {1e3 * pct(c, 0.95):6.2f} ms)"
    return out


#: CPU seconds (this process, all its threads) of each timed call, by function: on a machine shared with
#: other jobs the wall clock also counts the time spent waiting for a core; CPU time is the work itself
CPU: dict[str, list[float]] = {}


def side_by_side(fns: dict, items: list, rounds: int) -> dict[str, list[float]]:
    """Per-item wall seconds of each function (CPU seconds into ``CPU``), every function on an item
    before the next item."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for k in fns:
        CPU[k] = []
    keys = list(fns)
    for r in range(rounds):
        for i, item in enumerate(items):
            for k in keys[(i + r) % len(keys) :] + keys[: (i + r) % len(keys)]:  # rotate who goes first
                c0, t0 = time.process_time(), time.perf_counter()
                fns[k](item)
                times[k].append(time.perf_counter() - t0)
                CPU[k].append(time.process_time() - c0)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("GUARD_DATA", DEFAULT_DATA)))
    ap.add_argument("--n", type=int, default=300, help="prompts timed at batch 1 (default 300)")
    ap.add_argument("--rounds", type=int, default=2, help="timing rounds over the --n prompts (default 2)")
    ap.add_argument("--agree-n", type=int, default=2000, help="prompts whose views int8 is compared on")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    ap.add_argument("--quick", action="store_true", help="--n 120 --rounds 1 --agree-n 500")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.rounds, args.agree_n = 120, 1, 500
    data_path = args.data if args.data.suffix == ".csv" else args.data / "i2p.csv"
    if not data_path.is_file():
        print(f"encoder_speed: no prompt CSV at {data_path} (--data)", file=sys.stderr)
        return 2
    print(f"load at start: {load_avg()}  threads {args.threads}  data {data_path}")

    from guard.screen.onnx_export import export_onnx_bytes, quantize_int8, quantize_int8_blocks

    model_dir = resolve_model_path("all-MiniLM-L6-v2")
    cfg = direct_config(model_dir)
    tok = _Tokenizer(model_dir, int(cfg["max_seq_length"]))
    t0 = time.perf_counter()
    unfused, uinfo = export_onnx_bytes(model_dir, fuse=False)
    t1 = time.perf_counter()
    fused, finfo = export_onnx_bytes(model_dir, fuse=True)
    t2 = time.perf_counter()
    if finfo["graph"] != "fused":
        print("encoder_speed: the optimiser did not fuse the graph (see the warning above)", file=sys.stderr)
        return 1
    fused_q, _ = quantize_int8(fused, tok, 384)
    unfused_q, _ = quantize_int8(unfused, tok, 384)
    blocks_q, _ = quantize_int8_blocks(unfused, tok, 384)
    print(
        f"export: unfused {t1 - t0:.1f} s, fused {t2 - t1:.1f} s (fused ops {finfo['fused_ops']}); "
        f"vs torch min cosine unfused {uinfo['min_cosine']:.7f} fused {finfo['min_cosine']:.7f} "
        f"(packed {finfo['min_cosine_packed']:.7f})"
    )
    graphs = {
        "unfused_fp32": unfused,
        "fused_fp32": fused,
        "fused_int8": fused_q,
        "unfused_int8": unfused_q,
        "int8_blocks": blocks_q,
    }
    sess = {k: session(v, args.threads) for k, v in graphs.items()}
    single = {k: session(v, 1) for k, v in graphs.items()}
    names = {k: [i.name for i in s.get_inputs()] for k, s in sess.items()}

    rng = random.Random(args.seed)
    prompts = load_prompts(data_path)
    rng.shuffle(prompts)
    timed = prompts[: args.n]

    def encs_of(texts):
        e, empty = drop_unknown(tok.encode(texts), tok.unk_id, tok.n_special)
        return [x for x, z in zip(e, empty) if not z]

    whole = encs_of(timed)
    views = []
    for p in timed:
        text = normalize(p).text
        vs = [text] + [text[a:b] for a, b in segments(text, spans=True)]
        views.append(encs_of(list(dict.fromkeys(vs))))
    lens = np.array([len(e[0]) for e in whole])
    print(
        f"{len(timed)} I2P prompts: tokens mean {lens.mean():.0f}, p50 {np.median(lens):.0f}, "
        f"p95 {np.percentile(lens, 95):.0f}, max {lens.max()}; > 77 tokens {100 * (lens > 77).mean():.1f} %; "
        f"views per prompt {np.mean([len(v) for v in views]):.1f}, "
        f"tokens per packed call {np.mean([sum(len(e[0]) for e in v) for v in views]):.0f}"
    )

    # ---------------------------------------------------------------- agreement, fused vs unfused fp32
    a = np.stack([run_one(sess["unfused_fp32"], names["unfused_fp32"], e) for e in whole[:200]])
    b = np.stack([run_one(sess["fused_fp32"], names["fused_fp32"], e) for e in whole[:200]])
    cos_single = float(_cosines(a, b).min())

    def sorted_batches(key, encs, bs=64):
        s, nm = sess[key], names[key]
        out = np.empty((len(encs), 384), dtype=np.float32)
        for idx in _batches([len(e[0]) for e in encs], bs):
            out[idx] = s.run(["embeddings"], feeds_of(nm, [encs[i] for i in idx]))[0]
        return out

    cos_batch = float(_cosines(sorted_batches("unfused_fp32", whole), sorted_batches("fused_fp32", whole)).min())
    cos_packed = min(
        float(
            _cosines(
                run_packed_rows(sess["fused_fp32"], names["fused_fp32"], v),
                np.stack([run_one(sess["unfused_fp32"], names["unfused_fp32"], e) for e in v]),
            ).min()
        )
        for v in views[:150]
    )
    print(
        f"fused vs unfused fp32 (cosine, min): single {cos_single:.7f}, batches of 64 {cos_batch:.7f}, "
        f"packed views vs each view alone {cos_packed:.7f}"
    )

    # ---------------------------------------------------------------- 1-2. batch 1
    keys = list(graphs)
    print(f"\nbatch 1, whole prompt (load {load_avg()}):")
    t_whole = side_by_side({k: (lambda e, k=k: run_one(sess[k], names[k], e)) for k in keys}, whole, args.rounds)
    for k in keys:
        print(f"  {k:13s} {ms(t_whole[k], k)}")
    print(f"batch 1, the prompt's views packed in one call (load {load_avg()}):")
    t_views = side_by_side(
        {k: (lambda v, k=k: run_packed_rows(sess[k], names[k], v)) for k in keys}, views, args.rounds
    )
    for k in keys:
        print(f"  {k:13s} {ms(t_views[k], k)}")

    # ---------------------------------------------------------------- 3. batch 64
    chunks = [whole[i : i + 64] for i in range(0, len(whole) - 63, 64)] or [whole]
    pools = {k: ThreadPoolExecutor(args.threads) for k in keys}

    def b64_sorted(k):
        return lambda ch: sorted_batches(k, ch)

    def b64_each(k):
        s, nm, ex = single[k], names[k], pools[k]
        return lambda ch: list(ex.map(lambda e: run_one(s, nm, e), ch))

    fns = {f"{k} sorted": b64_sorted(k) for k in keys}
    fns.update({f"{k} each": b64_each(k) for k in keys})
    print(f"batch 64, prompts/s (load {load_avg()}):")
    t_b64 = side_by_side(fns, chunks, args.rounds)
    rate = {k: 64 * len(v) / sum(v) for k, v in t_b64.items()}
    for k in fns:
        print(f"  {k:20s} {rate[k]:7.0f} prompts/s   ({64 * len(CPU[k]) / sum(CPU[k]):7.0f} per CPU-second)")
    for ex in pools.values():
        ex.shutdown()

    # ---------------------------------------------------------------- 4. int8 agreement per view
    agree = prompts[: args.agree_n]
    qkeys = ["fused_int8", "unfused_int8", "int8_blocks"]
    cos_views: dict[str, list[float]] = {k: [] for k in qkeys}
    cos_whole: dict[str, list[float]] = {k: [] for k in qkeys}
    for p in agree:
        text = normalize(p).text
        v = encs_of(list(dict.fromkeys([text] + [text[a:b] for a, b in segments(text, spans=True)])))
        if not v:
            continue
        ref = run_packed_rows(sess["unfused_fp32"], names["unfused_fp32"], v)
        for k in cos_views:
            got = run_packed_rows(single[k], names[k], v)  # as the screen runs it: one packed call per prompt
            c = _cosines(got, ref)
            cos_views[k].extend(c.tolist())
            cos_whole[k].append(float(c[0]))
    print(f"int8 vs fp32 (cosine), {len(cos_whole['fused_int8'])} prompts, {len(cos_views['fused_int8'])} views:")
    for k in cos_views:
        cv, cw = np.array(cos_views[k]), np.array(cos_whole[k])
        print(
            f"  {k:13s} per view min {cv.min():.4f} mean {cv.mean():.5f} q0.001 {np.quantile(cv, 0.001):.4f} "
            f"< 0.99: {100 * (cv < 0.99).mean():.2f} %;  whole prompt min {cw.min():.4f} mean {cw.mean():.5f}"
        )

    # ---------------------------------------------------------------- 5. session settings (the default: unfused fp32)
    variants = {
        "threads=1": session(unfused, 1),
        "threads=2": session(unfused, 2),
        "threads=2 spin": session(unfused, 2, spin=True),
        "threads=2 no arena": session(unfused, 2, arena=False),
    }
    vn = [i.name for i in variants["threads=1"].get_inputs()]

    def iobound(s):
        def run(e):
            f = feeds_of(vn, [e])
            io = s.io_binding()
            for k2, v2 in f.items():
                io.bind_cpu_input(k2, np.ascontiguousarray(v2))
            io.bind_output("embeddings")
            s.run_with_iobinding(io)
            return io.copy_outputs_to_cpu()[0]

        return run

    fns = {k: (lambda e, s=s: s.run(["embeddings"], feeds_of(vn, [e]))) for k, s in variants.items()}
    fns["threads=2 iobinding"] = iobound(variants["threads=2"])
    print(f"session settings, unfused fp32, batch 1 whole prompt (load {load_avg()}):")
    t_set = side_by_side(fns, whole, args.rounds)
    for k in fns:
        print(f"  {k:20s} {ms(t_set[k], k)}")
    bfns = {
        k: (
            lambda ch, s=s: [
                s.run(["embeddings"], feeds_of(vn, [ch[i] for i in idx]))
                for idx in _batches([len(e[0]) for e in ch], 64)
            ]
        )
        for k, s in variants.items()
    }
    print(f"session settings, unfused fp32, batch 64 sorted (load {load_avg()}):")
    t_bset = side_by_side(bfns, chunks, args.rounds)
    for k in bfns:
        print(
            f"  {k:20s} {64 * len(t_bset[k]) / sum(t_bset[k]):7.0f} prompts/s   "
            f"({64 * len(CPU[k]) / sum(CPU[k]):7.0f} per CPU-second)"
        )

    # ---------------------------------------------------------------- 6. truncation
    from guard.screen.onnx_session import run_packed

    s, nm = sess["unfused_fp32"], names["unfused_fp32"]
    cls_id, sep_id = whole[0][0][0], whole[0][0][-1]

    def capped(enc, n):
        ids, tt = enc
        return (ids[: n - 1] + [sep_id], tt[:n]) if len(ids) > n else enc

    def capped_plus_rest(enc, n):
        """The first n tokens, and the rest as n-token windows, packed in one call."""
        ids = enc[0]
        if len(ids) <= n:
            return run_packed(s, nm, [enc])
        body = ids[1:-1]
        head = [cls_id] + body[: n - 2] + [sep_id]
        rest = body[n - 2 :]
        blocks = [(head, [0] * len(head))]
        for i in range(0, len(rest), n - 2):
            w = [cls_id] + rest[i : i + n - 2] + [sep_id]
            blocks.append((w, [0] * len(w)))
        return run_packed(s, nm, blocks)

    fns = {
        "full (256)": lambda e: run_one(s, nm, e),
        "cap 128": lambda e: run_one(s, nm, capped(e, 128)),
        "cap 77": lambda e: run_one(s, nm, capped(e, 77)),
        "cap 77 + rest windows": lambda e: capped_plus_rest(e, 77),
    }
    print(f"truncation, unfused fp32, batch 1 whole prompt (load {load_avg()}):")
    t_cap = side_by_side(fns, whole, args.rounds)
    long_idx = [i for i, e in enumerate(whole) if len(e[0]) > 77]
    for k in fns:
        lt = [t for j, t in enumerate(t_cap[k]) if (j % len(whole)) in set(long_idx)]
        extra = f"   prompts > 77 tokens: p50 {1e3 * statistics.median(lt):.2f} ms" if lt else ""
        lc = [t for j, t in enumerate(CPU[k]) if (j % len(whole)) in set(long_idx)]
        extra += f" (CPU {1e3 * statistics.median(lc):.2f} ms)" if lc else ""
        print(f"  {k:22s} {ms(t_cap[k], k)}{extra}")

    end_load = load_avg()
    print(f"load at end: {end_load}")
    r = {
        "load": end_load.split()[0],
        "threads": args.threads,
        "n": len(whole),
        "unfused_p50_ms": 1e3 * statistics.median(t_whole["unfused_fp32"]),
        "unfused_p95_ms": 1e3 * pct(t_whole["unfused_fp32"], 0.95),
        "fused_p50_ms": 1e3 * statistics.median(t_whole["fused_fp32"]),
        "fused_p95_ms": 1e3 * pct(t_whole["fused_fp32"], 0.95),
        "int8_p50_ms": 1e3 * statistics.median(t_whole["unfused_int8"]),
        "int8_p95_ms": 1e3 * pct(t_whole["unfused_int8"], 0.95),
        "fused_int8_p50_ms": 1e3 * statistics.median(t_whole["fused_int8"]),
        "views_unfused_p50_ms": 1e3 * statistics.median(t_views["unfused_fp32"]),
        "views_fused_p50_ms": 1e3 * statistics.median(t_views["fused_fp32"]),
        "views_int8_p50_ms": 1e3 * statistics.median(t_views["unfused_int8"]),
        "views_blocks_p50_ms": 1e3 * statistics.median(t_views["int8_blocks"]),
        "unfused_b64": rate["unfused_fp32 sorted"],
        "fused_b64": rate["fused_fp32 sorted"],
        "int8_b64": rate["unfused_int8 each"],
        "blocks_p50_ms": 1e3 * statistics.median(t_whole["int8_blocks"]),
        "blocks_p95_ms": 1e3 * pct(t_whole["int8_blocks"], 0.95),
        "blocks_b64": rate["int8_blocks sorted"],
        "blocks_view_cos_min": float(np.min(cos_views["int8_blocks"])),
        "blocks_view_cos_mean": float(np.mean(cos_views["int8_blocks"])),
        "fused_vs_unfused_cos_min": min(cos_single, cos_batch, cos_packed),
        "int8_view_cos_min": float(np.min(cos_views["unfused_int8"])),
        "int8_view_cos_mean": float(np.mean(cos_views["unfused_int8"])),
        "fused_int8_view_cos_min": float(np.min(cos_views["fused_int8"])),
        "cap77_p95_ms": 1e3 * pct(t_cap["cap 77"], 0.95),
        "full_p95_ms": 1e3 * pct(t_cap["full (256)"], 0.95),
    }
    print("RESULT " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
