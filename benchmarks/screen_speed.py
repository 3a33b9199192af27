"""Screen speed: the whole prompt screen against plain sentence-transformers + FAISS, and the
embedding runtimes (torch, ONNX fp32, ONNX int8) side by side.

    python benchmarks/screen_speed.py [--n 200] [--repeat 3] [--data ../shared/data/prompts/i2p.csv]
                                      [--threads 2] [--skip-cold]

End to end (issue 10 item 7): ``PromptScreen`` under the default policy with every signal on
(de-obfuscation views, segments, lexical layer, suspicion, rules), as shipped (the fast path on) and
with ``screen.fast_path: false`` (every prompt through the full screen), without batch packing (``screen_unbatched``:
each prompt's views in encoder calls of their own, the design before it), per prompt at batch 1 (p50 and p95)
and prompts/s at batch 64, on I2P-length prompts (``--data`` a CSV with a 'prompt' column; else
generated prompts of 5-80 word pieces); beside it the plain baseline: ``SentenceTransformer.encode``
of the prompt and a FAISS ``IndexFlatIP`` nearest-phrase search over the same phrases. Then the
embedders alone at batch 1 and 32, the one-time ONNX export time, cold starts in fresh processes
(``--skip-cold`` skips them) and the cosine agreement. The export goes to a fresh temporary cache dir
(``--cache-dir`` to use another). The last line is ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SUBJECTS = [
    "a cat",
    "an old fisherman",
    "a red sports car",
    "two children",
    "a lighthouse",
    "a bowl of ramen",
    "a medieval castle",
    "a golden retriever",
    "an astronaut",
    "a street market",
    "a ballerina",
    "a steam locomotive",
    "a bonsai tree",
    "a samurai",
    "a city skyline",
    "a hummingbird",
]
ACTIONS = [
    "sitting on a windowsill",
    "walking in the rain",
    "at sunset",
    "in a snowy forest",
    "on a busy street",
    "under neon lights",
    "by the sea",
    "in a kitchen",
    "floating in space",
    "in a misty valley",
]
STYLES = [
    "oil painting",
    "photograph, 35mm",
    "watercolour",
    "digital art",
    "pencil sketch",
    "studio ghibli style",
    "cinematic lighting",
    "unreal engine render",
    "by greg rutkowski",
    "trending on artstation",
    "highly detailed",
    "8k",
    "bokeh",
    "volumetric light",
    "sharp focus",
    "concept art",
]


def make_prompts(n: int, seed: int = 0) -> list[str]:
    """Generic text-to-image prompts of varied length (a few words to ~80 word pieces)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        p = f"{rng.choice(SUBJECTS)} {rng.choice(ACTIONS)}"
        k = rng.choice([0, 0, 1, 2, 3, 5, 8, 12])
        if k:
            p += ", " + ", ".join(rng.sample(STYLES, min(k, len(STYLES))))
        out.append(p)
    return out


def read_prompts(path: Path, n: int) -> list[str]:
    """The first ``n`` prompts of a CSV (its 'prompt' column, else its first); a folder of the shared
    prompt sets stands for its ``i2p.csv``."""
    path = Path(path)
    if path.is_dir():
        if not (path / "i2p.csv").is_file():
            raise SystemExit(f"--data {path}: a folder without i2p.csv; give a CSV with a 'prompt' column")
        path = path / "i2p.csv"
    if not path.is_file():
        raise SystemExit(f"--data {path}: no such file")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"--data {path}: no rows")
    col = "prompt" if "prompt" in rows[0] else next(iter(rows[0]))
    return [r[col] for r in rows[:n]]


COLD = r"""
import json, sys, time
t0 = time.perf_counter()
backend = sys.argv[1]
if backend == "torch":
    from guard.screen.embedder import Embedder as E
else:
    from guard.screen.onnx_backend import OnnxEmbedder as E
t1 = time.perf_counter()
e = E()
t2 = time.perf_counter()
e.encode(["a photo of a cat"])
t3 = time.perf_counter()
info = {"import_s": t1 - t0, "load_s": t2 - t1, "first_encode_s": t3 - t2,
        "torch_imported": "torch" in sys.modules}
if backend == "onnx":
    info["exported"] = e.exported and {k: (str(v) if k == "path" else v) for k, v in e.exported.items()}
    info["provider"] = e.provider
print("JSON" + json.dumps(info))
"""


def cold(backend: str, cache: Path) -> dict:
    env = dict(
        os.environ,
        GUARD_CACHE_DIR=str(cache),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", COLD, backend], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{backend} cold start failed:\n{r.stderr[-3000:]}")
    line = next(x for x in r.stdout.splitlines() if x.startswith("JSON"))
    info = json.loads(line[4:])
    info["process_s"] = wall
    return info


def per_prompt_ms(emb, prompts: list[str], batch: int) -> float:
    t0 = time.perf_counter()
    for s in range(0, len(prompts), batch):
        emb.encode(prompts[s : s + batch])
    return (time.perf_counter() - t0) * 1000 / len(prompts)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def policy_views(policy_name: str) -> str:
    from guard.policy import load_policy

    return load_policy(policy_name).screen.view_encoder


ROWS = (
    "screen",
    "screen_full",
    "screen_unbatched",
    "screen_minilm",
    "screen_static",
    "screen_int8",
    "screen_alone",
    "stfaiss",
)


def end_to_end(prompts: list[str], policy_name: str, repeat: int, rows: Sequence[str] = ROWS) -> dict[str, float]:
    """p50/p95 ms at batch 1 (wall clock and process CPU time) and prompts/s at batch 64: the screen
    as shipped, with every view by MiniLM (packed in one call per prompt), with the sub-views by
    the static encoder (``screen.view_encoder``), with the opt-in int8 graph, and with MiniLM views in
    padded batches (an earlier design);
    beside them the sentence-transformers + FAISS baseline over the same phrases."""
    import faiss
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from guard.policy import load_policy
    from guard.screen import PromptScreen
    from guard.screen.embedder import get_embedder, resolve_model_path

    policy = load_policy(policy_name)
    out: dict[str, float] = {}

    warm = make_prompts(64, seed=1) + ["ein Hund spielt im Park, Aquarell"]  # never the measured prompts

    def timed(fn_one, fn_batch, key, clear=lambda: None):
        # the screen's embedding caches are emptied before every pass: only segments that recur across
        # different prompts of one pass ("highly detailed") are served from them, as in production
        fn_one(warm[0])
        fn_batch(warm)
        lat: list[float] = []
        cpu: list[float] = []
        for _ in range(repeat):
            clear()
            for p in prompts:
                c, t = time.process_time(), time.perf_counter()
                fn_one(p)
                lat.append((time.perf_counter() - t) * 1000)
                cpu.append((time.process_time() - c) * 1000)
        best = 0.0
        for _ in range(repeat):
            clear()
            t = time.perf_counter()
            for s in range(0, len(prompts), 64):
                fn_batch(prompts[s : s + 64])
            best = max(best, len(prompts) / (time.perf_counter() - t))
        out[f"{key}_p50_ms"], out[f"{key}_p95_ms"], out[f"{key}_b64_pps"] = pct(lat, 0.5), pct(lat, 0.95), best
        out[f"{key}_cpu_p50_ms"], out[f"{key}_cpu_p95_ms"] = pct(cpu, 0.5), pct(cpu, 0.95)

    def with_views(encoder: str):
        return policy.model_copy(update={"screen": policy.screen.model_copy(update={"view_encoder": encoder})})

    full = policy.model_copy(update={"screen": policy.screen.model_copy(update={"fast_path": False})})
    for key, backend, packed, pol in (
        ("screen", policy.screen.backend, True, policy),
        ("screen_full", policy.screen.backend, True, full),
        ("screen_unbatched", policy.screen.backend, True, policy),
        ("screen_minilm", policy.screen.backend, True, with_views("minilm")),
        ("screen_static", policy.screen.backend, True, with_views("static")),
        ("screen_int8", "onnx-int8", True, policy),
        ("screen_alone", policy.screen.backend, False, with_views("minilm")),
    ):
        if key not in rows:
            continue
        if key in ("screen_minilm", "screen_static") and pol.screen.view_encoder == policy.screen.view_encoder:
            for suffix in ("_p50_ms", "_p95_ms", "_b64_pps", "_cpu_p50_ms", "_cpu_p95_ms"):  # the shipped row's
                out[key + suffix] = out["screen" + suffix]
            continue
        emb = get_embedder(policy.screen.model, backend=backend)
        scr = PromptScreen(pol, embedder=emb, pack_views=packed)
        if scr.fast is not None:  # a fresh cache builds the fast path's table in the background: not timed
            scr.fast.wait_ready(900)
        # screen_unbatched: a batch's views in calls of their own per prompt (the design before batch packing)
        saved = getattr(emb, "batch_packing", None)
        if saved is not None:
            emb.batch_packing = key != "screen_unbatched"
        try:
            timed(scr.screen, scr.screen_batch, key, clear=emb.clear_cache)
        finally:
            if saved is not None:
                emb.batch_packing = saved
        if key == "screen":
            got = scr.screen_batch(prompts)
            out["screen_views"] = statistics.mean(r.n_views for r in got)
            out["fast_exit_share"] = sum(r.stage == "fast" for r in got) / max(1, len(got))

    if "stfaiss" not in rows:
        return out
    st = SentenceTransformer(str(resolve_model_path(policy.screen.model)), device="cpu")
    phrases = [p for c in policy.concepts for p in c.phrases]
    dim = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    index = faiss.IndexFlatIP(dim())
    index.add(np.ascontiguousarray(st.encode(phrases, batch_size=64, normalize_embeddings=True), dtype=np.float32))

    def st_batch(ps):
        e = st.encode(list(ps), batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        return index.search(np.ascontiguousarray(e, dtype=np.float32), 1)

    timed(lambda p: st_batch([p]), st_batch, "stfaiss")
    return out


def embedders_alone(prompts: list[str], repeat: int) -> dict[str, float]:
    """The embedding runtimes alone (torch, ONNX fp32) at batch 1 and 32, median ms per prompt, and
    their cosine agreement."""
    import numpy as np
    import torch

    from guard.screen import onnx_backend
    from guard.screen.embedder import Embedder
    from guard.screen.onnx_backend import OnnxEmbedder

    t_emb, o_emb = Embedder(), OnnxEmbedder()
    o_emb.cache_size = 0  # the runtimes alone: every call encodes
    print(
        f"provider {o_emb.provider}; threads: torch {torch.get_num_threads()}, "
        f"onnxruntime {onnx_backend._num_threads()}"
    )
    for e in (t_emb, o_emb):  # warm up
        e.encode(prompts[:32])
        e.encode(prompts[:1])
    res: dict[str, list[float]] = {}
    for _ in range(repeat):
        for b in (1, 32):
            for name, e in (("torch", t_emb), ("onnx", o_emb)):
                res.setdefault(f"{name}_ms_b{b}", []).append(per_prompt_ms(e, prompts, b))
        # the runtime alone: onnx batched like the torch path (one padded batch per call)
        fill, onnx_backend.MIN_FILL = onnx_backend.MIN_FILL, 0.0
        try:
            res.setdefault("onnx_onepad_ms_b32", []).append(per_prompt_ms(o_emb, prompts, 32))
        finally:
            onnx_backend.MIN_FILL = fill
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"  {'ms/prompt':10s} {'torch':>8s} {'onnx':>8s} {'speedup':>8s}")
    for b in (1, 32):
        t, o = med[f"torch_ms_b{b}"], med[f"onnx_ms_b{b}"]
        print(f"  batch {b:<4d} {t:8.2f} {o:8.2f} {t / o:7.2f}x")
    t, o = med["torch_ms_b32"], med["onnx_onepad_ms_b32"]
    print(f"  batch 32, onnx padded like torch (runtime only): {o:.2f} ms ({t / o:.2f}x)")
    a, z = t_emb.encode(prompts), o_emb.encode(prompts)
    live = np.linalg.norm(a, axis=1) > 0  # texts with no known word piece embed to zero in both
    cos = (a[live] * z[live]).sum(1)
    print(f"cosine torch vs onnx over {int(live.sum())} prompts: min {cos.min():.6f} mean {cos.mean():.6f}")
    med["min_cosine"] = float(cos.min())
    return med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="number of prompts (default 200)")
    ap.add_argument("--repeat", type=int, default=3, help="timing repeats; the median is reported")
    ap.add_argument("--data", default=None, help="a CSV with a 'prompt' column instead of generated prompts")
    ap.add_argument("--cache-dir", default=None, help="GUARD_CACHE_DIR to export into (default: a fresh temp dir)")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads for both torch and onnxruntime (default: torch's default)",
    )
    ap.add_argument("--policy", default="default", help="policy for the end-to-end screen (default: default)")
    ap.add_argument("--skip-cold", action="store_true", help="skip the cold starts in fresh processes")
    ap.add_argument("--quick", action="store_true", help="end to end only (no cold starts, no embedders-alone table)")
    ap.add_argument(
        "--rows",
        default=",".join(ROWS),
        help=f"comma-separated end-to-end rows to time (default all: {','.join(ROWS)}; 'screen' always)",
    )
    args = ap.parse_args()
    if args.quick:
        args.skip_cold = True
    if args.threads:
        os.environ["GUARD_ONNX_THREADS"] = str(args.threads)

    prompts = read_prompts(Path(args.data), args.n) if args.data else make_prompts(args.n)
    tmp = None
    if args.cache_dir:
        cache = Path(args.cache_dir)
    else:
        tmp = tempfile.mkdtemp(prefix="guard-speed-")
        cache = Path(tmp)
    try:
        print(f"{len(prompts)} prompts; cache dir {cache}; cpu threads {len(os.sched_getaffinity(0))}")
        if args.skip_cold:
            first = c_onnx = c_torch = {
                "import_s": float("nan"),
                "load_s": float("nan"),
                "first_encode_s": float("nan"),
                "process_s": float("nan"),
                "torch_imported": None,
            }
        else:
            print("cold starts (fresh processes) ...", flush=True)
            first = cold("onnx", cache)  # exports when the cache dir is fresh
            c_onnx = cold("onnx", cache)  # loads the cached graph
            c_torch = cold("torch", cache)
        exp = first.get("exported") or {}
        export_s = exp.get("seconds")
        print(
            f"  onnx export (one time): {export_s:.1f} s, "
            f"min cosine vs torch {exp['min_cosine']:.6f}, {exp['exporter']}"
            if export_s is not None
            else "  onnx export: already cached (pass a fresh --cache-dir to time it)"
        )
        print(f"  {'':22s} {'import s':>9s} {'load s':>8s} {'1st encode s':>13s} {'process s':>10s}  torch imported")
        for name, c in (("torch", c_torch), ("onnx (cached graph)", c_onnx)):
            print(
                f"  {name:22s} {c['import_s']:9.2f} {c['load_s']:8.2f} {c['first_encode_s']:13.3f} "
                f"{c['process_s']:10.2f}  {c['torch_imported']}"
            )

        os.environ["GUARD_CACHE_DIR"] = str(cache)
        import torch

        from guard.screen import onnx_backend

        if args.threads:
            torch.set_num_threads(args.threads)
        med = {} if args.quick else embedders_alone(prompts, args.repeat)

        print("end to end, every signal on ...", flush=True)
        rows = ["screen"] + [r for r in args.rows.split(",") if r in ROWS and r != "screen"]
        unknown = [r for r in args.rows.split(",") if r not in ROWS]
        if unknown:
            ap.error(f"--rows: unknown {unknown}; expected some of {', '.join(ROWS)}")
        e2e = end_to_end(prompts, args.policy, args.repeat, rows)
        print(
            f"threads: torch {torch.get_num_threads()}, onnxruntime {onnx_backend._num_threads()}; "
            f"load average {os.getloadavg()[0]:.2f} (timings under load are noisy: compare rows of one run)"
        )
        print(f"  {'':36s} {'p50 ms':>8s} {'p95 ms':>8s} {'cpu p50':>8s} {'cpu p95':>8s} {'b64 prompts/s':>14s}")
        for key, label in (
            ("screen", f"guard screen (as shipped: {policy_views(args.policy)} views)"),
            ("screen_full", "guard screen (fast path off)"),
            ("screen_unbatched", "guard screen (no batch packing)"),
            ("screen_minilm", "guard screen (MiniLM views, packed)"),
            ("screen_static", "guard screen (static sub-views)"),
            ("screen_int8", "guard screen (onnx-int8, as shipped)"),
            ("screen_alone", "guard screen (MiniLM views, padded)"),
            ("stfaiss", "sentence-transformers+FAISS"),
        ):
            if key + "_p50_ms" not in e2e:
                continue
            print(
                f"  {label:36s} {e2e[key + '_p50_ms']:8.2f} {e2e[key + '_p95_ms']:8.2f} "
                f"{e2e[key + '_cpu_p50_ms']:8.2f} {e2e[key + '_cpu_p95_ms']:8.2f} {e2e[key + '_b64_pps']:14.1f}"
            )
        print(f"  views per prompt: {e2e['screen_views']:.1f} (the baseline embeds 1)")
        print(f"  allowed early by the fast path: {100 * e2e['fast_exit_share']:.1f} % of the prompts")
        result = {
            **{k: f"{v:.3f}" for k, v in med.items()},
            **{k: f"{v:.2f}" for k, v in e2e.items()},
            "load1": f"{os.getloadavg()[0]:.2f}",
        }
        if "stfaiss_p50_ms" in e2e:
            result["screen_vs_stfaiss_p50"] = f"{e2e['stfaiss_p50_ms'] / e2e['screen_p50_ms']:.2f}"
            result["screen_vs_stfaiss_b64"] = f"{e2e['screen_b64_pps'] / e2e['stfaiss_b64_pps']:.2f}"
        if med:
            result.update(
                speedup_b1=f"{med['torch_ms_b1'] / med['onnx_ms_b1']:.2f}",
                speedup_b32=f"{med['torch_ms_b32'] / med['onnx_ms_b32']:.2f}",
                min_cosine=f"{med['min_cosine']:.6f}",
            )
        result.update(
            export_s="cached" if export_s is None else f"{export_s:.1f}",
            load_torch_s=f"{c_torch['import_s'] + c_torch['load_s']:.2f}",
            load_onnx_s=f"{c_onnx['import_s'] + c_onnx['load_s']:.2f}",
        )
        order = [
            "screen_p50_ms",
            "screen_p95_ms",
            "screen_b64_pps",
            "screen_cpu_p50_ms",
            "screen_cpu_p95_ms",
            "stfaiss_p50_ms",
            "stfaiss_p95_ms",
            "stfaiss_b64_pps",
            "screen_vs_stfaiss_p50",
            "screen_vs_stfaiss_b64",
            "screen_full_p50_ms",
            "screen_full_p95_ms",
            "screen_full_b64_pps",
            "screen_unbatched_p50_ms",
            "screen_unbatched_p95_ms",
            "screen_unbatched_b64_pps",
            "fast_exit_share",
            "screen_minilm_p50_ms",
            "screen_minilm_p95_ms",
            "screen_minilm_b64_pps",
            "screen_static_p50_ms",
            "screen_static_p95_ms",
            "screen_static_b64_pps",
            "screen_int8_p50_ms",
            "screen_int8_p95_ms",
            "screen_int8_b64_pps",
            "screen_alone_p50_ms",
            "screen_alone_p95_ms",
            "screen_alone_b64_pps",
            "screen_views",
            "load1",
            "torch_ms_b1",
            "onnx_ms_b1",
            "torch_ms_b32",
            "onnx_ms_b32",
            "speedup_b1",
            "speedup_b32",
            "export_s",
            "load_torch_s",
            "load_onnx_s",
            "min_cosine",
            "onnx_onepad_ms_b32",
        ]
        print("RESULT " + " ".join(f"{k}={result[k]}" for k in order if k in result))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
