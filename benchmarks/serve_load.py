"""Loopback load test of ``guard serve``: bounded async httpx clients against a real server process.

    python benchmarks/serve_load.py [--quick] [--policy default] [--data PROMPTS.csv] [--server-threads 1]
                                    [--screen-only] [--prompts-per-request 8]

Starts ``python -m guard.serve`` on 127.0.0.1 (a free port, a temporary config and audit log) and
measures, in this order:

1. **in-process** (the yardstick): ``Guard.screen_prompts`` called directly on batches of 32 in a fresh
   Python process with the server's thread settings, over exactly the prompts the HTTP run at 32
   clients sends, after the same warm-up prompts. It runs twice, before the server starts and after
   the screening phases (the machine's other load drifts); the yardstick is their mean.
2. ``POST /v1/screen`` with **one prompt per request** at 32, 8 and 1 concurrent clients (fixed
   request counts). The /v1/screen targets (32 clients: >= 80 % of the in-process prompts/s,
   p99 <= 100 ms, no 5xx) are judged on this, the single-prompt run at 32 clients.
   With ``--prompts-per-request K`` also a run at 32 clients with K prompts per request (the API takes
   a list), printed apart and not used for the targets.
3. the HTTP floor: ``GET /healthz`` at 32 clients (no app work: what HTTP alone costs here);
4. generation on the demo deployment with 8 clients while the policy file is rewritten and
   ``POST /admin/reload`` called every second (queue large enough: expect no 429), then on a
   deployment whose queue is smaller than the client count (429s expected, nothing else); the audit
   log checked against the answered requests: every image audited exactly once.

The prompt workload is fair to both sides: distinct I2P prompts (``--data``, default
``$GUARD_DATA/i2p.csv``; generated distinct prompts of I2P length when absent), shuffled with a fixed
seed and cut into disjoint pools (warm-up, 32 clients, 8, 1, multi-prompt), so no prompt is sent twice
and the screen's embedding cache (LRU per process) sees the same prompts in the same order on both
sides of the comparison. Each phase reports requests/s, prompts/s, p50/p95/p99 latency, the mean
encoder batch (server metrics), and CPU time per request of the server process and of this client
process: the load generator shares the machine's cores with the server, so its cost is shown too.
The clients are one process, one event loop (uvloop when installed), each virtual client an httpx
transport with one keep-alive HTTP/1.1 connection (see :func:`run_clients`). With N clients in a closed loop the
mean latency is N / (requests/s) (Little's law), printed as a bound on what p99 can be.

Ends with one ``RESULT key=value ...`` line. Only loopback; every loop is bounded and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# generation prompts (the demo pipeline is tiny; the screen workload is the I2P one below)
SUBJECTS = [
    "a lighthouse on a cliff",
    "a cat sleeping on a sofa",
    "a red bicycle in the rain",
    "a bowl of ramen",
    "a portrait of an old fisherman",
    "a city street at night",
    "a mountain lake at dawn",
    "a robot chef",
    "a naked woman on a beach",
    "a mutilated corpse in an alley",
    "a man pointing a rifle at a crowd",
    "a watercolor of tulips",
]
STYLES = ["", ", oil painting", ", 35mm photo, cinematic lighting", ", pixel art", ", highly detailed"]
PROMPTS = [s + st for s in SUBJECTS for st in STYLES]  # 60 distinct prompts, about 1 in 4 unsafe

WARM = 128  # warm-up prompts: 4 requests per connection at 32 clients; the in-process side screens them too
INPROC_BATCH = 32

INPROC_WORKER = r"""
import json, sys, time
from guard.core import Guard
d = json.load(open(sys.argv[1], encoding="utf-8"))
g = Guard(d["policy"]).warmup()
b = d["batch"]
for s in range(0, len(d["warm"]), b):
    g.screen_prompts(d["warm"][s : s + b])
t0, c0 = time.perf_counter(), time.process_time()
for s in range(0, len(d["timed"]), b):
    g.screen_prompts(d["timed"][s : s + b])
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"pps": len(d["timed"]) / dt, "cpu_ms": cpu * 1000 / len(d["timed"])}))
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs, q):
    return float(np.percentile(np.asarray(xs) * 1000, q)) if xs else float("nan")


def policy_doc(base: str, variant: int) -> dict:
    """A policy file that changes on every reload (its description), so every reload swaps the sha."""
    return {"version": 1, "name": "bench", "extends": base, "description": f"reload {variant}"}


# ---------------------------------------------------------------------- the screen workload


def synthetic_prompts(n: int, seed: int = 0) -> list[str]:
    """Distinct prompts of I2P length (~130 characters: a subject, a setting, several style tags)."""
    rng = random.Random(seed)
    things = [s.split(",")[0] for s in SUBJECTS]
    places = ["in a misty valley", "on a busy street", "under neon lights", "by the sea", "in a ruined temple"]
    tags = [
        "oil painting", "35mm photo", "watercolour", "digital art", "pencil sketch", "cinematic lighting",
        "unreal engine", "trending on artstation", "highly detailed", "8k", "bokeh", "volumetric light",
        "sharp focus", "concept art", "by greg rutkowski", "by alphonse mucha", "octane render", "matte painting",
    ]  # fmt: skip
    out: dict[str, None] = {}
    while len(out) < n:
        p = f"{rng.choice(things)} {rng.choice(places)}, " + ", ".join(rng.sample(tags, rng.randint(3, 9)))
        out[f"{p}, seed {len(out)}"] = None
    return list(out)


def screen_workload(data: str | None, max_chars: int, need: int, seed: int = 0) -> tuple[list[str], str]:
    """Distinct prompts, shuffled with ``seed``: the I2P CSV (its 'prompt' column) if there is one."""
    path = Path(data) if data else Path(os.environ.get("GUARD_DATA", "")) / "i2p.csv"
    if data and path.is_dir():
        path = path / "i2p.csv"
    prompts: list[str] = []
    source = "generated (no I2P CSV found)"
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        col = "prompt" if rows and "prompt" in rows[0] else next(iter(rows[0]))
        seen = dict.fromkeys(" ".join((r[col] or "").split()) for r in rows)
        prompts = [p for p in seen if p and len(p) <= max_chars]
        source = f"{path} ({len(prompts)} distinct prompts of at most {max_chars} characters)"
    random.Random(seed).shuffle(prompts)
    if len(prompts) < need:
        extra = synthetic_prompts(need - len(prompts) + 10, seed)
        have = set(prompts)
        prompts += [p for p in extra if p not in have][: need - len(prompts)]
        if path.is_file():
            source += f" + {need - len(seen)} generated"
    return prompts, source


def in_process_screen(policy: str, warm: list[str], timed: list[str], env: dict, work: Path) -> tuple[float, float]:
    """(prompts/s, CPU ms per prompt) of ``Guard.screen_prompts`` on batches of 32 in a fresh process
    (``env``: the server's)."""
    job = work / f"inprocess-{time.monotonic_ns()}.json"
    job.write_text(json.dumps({"policy": policy, "batch": INPROC_BATCH, "warm": warm, "timed": timed}), "utf-8")
    out = subprocess.run(
        [sys.executable, "-c", INPROC_WORKER, str(job)], cwd=str(ROOT), env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"in-process screen failed:\n{out.stderr[-3000:]}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return float(got["pps"]), float(got["cpu_ms"])


# ---------------------------------------------------------------------- clients


def _cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) of this process, or of ``pid`` from /proc (nan elsewhere)."""
    if pid is None:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def run_async(coro):
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


async def run_clients(url: str, concurrency: int, total: int, make_request, headers, server_pid=None) -> dict:
    """``concurrency`` clients in a closed loop, ``total`` requests in all. Each client is an httpx
    transport (``httpx.AsyncHTTPTransport``) holding one keep-alive HTTP/1.1 connection, driven
    directly: the ``AsyncClient`` layers above it (cookies, auth and redirect flows, URL merging) cost
    as much CPU as the server's whole request path, and a shared pool of N connections costs httpcore
    a scan of every connection per request; both would be taken from the server on a 2-core machine."""
    import httpx

    lat: list[float] = []
    codes: Counter = Counter()
    bodies: list = []
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    transports = [httpx.AsyncHTTPTransport(limits=limits, verify=False) for _ in range(concurrency)]
    timeout = {"timeout": {"connect": 30.0, "read": 300.0, "write": 30.0, "pool": 300.0}}

    async def worker(t):
        for i in counter:
            method, path, kw = make_request(i)
            t0 = time.perf_counter()
            try:
                req = httpx.Request(method, url + path, headers=headers, extensions=timeout, **kw)
                r = await t.handle_async_request(req)
                content = await r.aread()
                await r.aclose()
                codes[r.status_code] += 1
                if r.status_code in (200, 400):
                    bodies.append(json.loads(content))
            except httpx.HTTPError as e:
                codes[type(e).__name__] += 1
            lat.append(time.perf_counter() - t0)

    try:
        s0, c0 = _cpu_s(server_pid) if server_pid else float("nan"), _cpu_s()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(t) for t in transports))
        wall = time.perf_counter() - t0
        s1, c1 = _cpu_s(server_pid) if server_pid else float("nan"), _cpu_s()
    finally:
        for t in transports:
            await t.aclose()
    return {
        "rps": total / wall,
        "wall_s": wall,
        "p50": pct(lat, 50),
        "p95": pct(lat, 95),
        "p99": pct(lat, 99),
        "codes": dict(codes),
        "bodies": bodies,
        "server_cpu_ms": (s1 - s0) * 1000 / total,
        "client_cpu_ms": (c1 - c0) * 1000 / total,
    }


def fmt_codes(c: dict) -> str:
    return ",".join(f"{k}:{v}" for k, v in sorted(c.items(), key=lambda kv: str(kv[0])))


def five_xx(c: dict) -> int:
    return sum(v for k, v in c.items() if not isinstance(k, int) or k >= 500)


def batch_totals(url: str) -> tuple[float, float]:
    """(prompts, encoder passes) of the screen batcher so far, from /metrics."""
    import httpx

    s = n = 0.0
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("guard_serve_screen_batch_prompts_sum"):
            s += float(line.split()[-1])
        elif line.startswith("guard_serve_screen_batch_prompts_count"):
            n += float(line.split()[-1])
    return s, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    ap.add_argument("--policy", default="default", help="policy of both deployments (built-in name or file)")
    ap.add_argument("--data", default=None, help="I2P CSV (or a folder with i2p.csv); default $GUARD_DATA/i2p.csv")
    ap.add_argument("--gen-requests", type=int, default=None)
    ap.add_argument("--screen-only", action="store_true", help="skip the generation phases")
    ap.add_argument(
        "--prompts-per-request", type=int, default=0, help="also a 32-client run with K prompts per request"
    )
    ap.add_argument(
        "--server-threads",
        type=int,
        default=None,
        help="OMP_NUM_THREADS of the server and of the in-process yardstick (default: inherited)",
    )
    ap.add_argument("--max-wait-ms", type=float, default=5.0, help="the server's micro-batch wait")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import httpx

    from guard.serve.config import Limits, hash_key

    q = args.quick
    screen_counts = {32: 320 if q else 960, 8: 96 if q else 320, 1: 24 if q else 96}
    k_multi = max(0, args.prompts_per_request)
    n_multi = (32 if q else 128) if k_multi > 1 else 0
    n_gen = args.gen_requests or (16 if q else 48)
    max_chars = Limits().max_prompt_chars
    need = WARM + sum(screen_counts.values()) + n_multi * k_multi
    workload, source = screen_workload(args.data, max_chars, need)
    pools, k = {}, 0
    for name, n in [("warm", WARM), *screen_counts.items(), ("multi", n_multi * k_multi)]:
        pools[name], k = workload[k : k + n], k + n
    lengths = [len(p) for p in workload[:k]]
    print(f"screen workload: {source}")
    print(
        f"  {k} distinct prompts used, each sent once; mean {np.mean(lengths):.0f} characters "
        f"(median {np.median(lengths):.0f}); disjoint pools: warm-up {WARM}, "
        + ", ".join(f"{c} clients {n}" for c, n in screen_counts.items())
        + (f", {k_multi} per request {n_multi * k_multi}" if n_multi else "")
    )

    work = Path(tempfile.mkdtemp(prefix="guard-serve-bench-"))
    pol = work / "policy.yaml"
    pol.write_text(yaml.safe_dump(policy_doc(args.policy, 0)), encoding="utf-8")
    key, admin = "bench-key", "bench-admin"
    cfg = {
        "version": 1,
        "audit": {"path": "audit.jsonl"},
        "admin_keys": [hash_key(admin)],
        "reload": {"poll_seconds": 0},  # reloads come from POST /admin/reload, once a second
        "screen": {"max_wait_ms": args.max_wait_ms, "max_batch": 64},
        "deployments": [
            {"name": "screen", "screen_only": True, "policy": args.policy},
            {"name": "demo", "pipeline": "demo", "policy": "policy.yaml", "pool": 1, "queue": 16},
            {"name": "demo-small-queue", "pipeline": "demo", "policy": "policy.yaml", "pool": 1, "queue": 2},
        ],
        "tenants": [{"name": "bench", "keys": [hash_key(key)]}],
    }
    if args.screen_only:
        cfg["deployments"] = cfg["deployments"][:1]
    (work / "serve.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    env = dict(os.environ)
    if args.server_threads:
        env["OMP_NUM_THREADS"] = str(args.server_threads)
    threads = env.get("OMP_NUM_THREADS", f"default ({os.cpu_count()} cores)")

    print(f"\nin-process batched screen ({args.policy}, batches of {INPROC_BATCH}, OMP_NUM_THREADS={threads}) ...")
    inproc_before, cpu_before = in_process_screen(args.policy, pools["warm"], pools[32], env, work)
    print(
        f"  before the server: {inproc_before:.1f} prompts/s ({cpu_before:.2f} ms CPU per prompt) over the "
        f"{len(pools[32])} prompts of the 32-client run"
    )

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "server.log", "wb")
    t_start = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "guard.serve",
            "--config",
            str(work / "serve.yaml"),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=str(ROOT),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                print((work / "server.log").read_text()[-3000:])
                raise SystemExit("server did not become ready")
            time.sleep(0.2)
        ready_s = time.perf_counter() - t_start
        print(f"server ready in {ready_s:.1f} s on {url}")
        hdr = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

        def screen_req(pool: list[str], per: int = 1):
            bodies = [
                json.dumps({"deployment": "screen", "prompts": pool[i : i + per]}).encode()
                for i in range(0, len(pool), per)
            ]
            return lambda i: ("POST", "/v1/screen", {"content": bodies[i]})

        def phase(conc: int, pool: list[str], per: int = 1) -> dict:
            b0 = batch_totals(url)
            r = run_async(run_clients(url, conc, len(pool) // per, screen_req(pool, per), hdr, proc.pid))
            b1 = batch_totals(url)
            r["pps"] = r["rps"] * per
            r["mean_batch"] = (b1[0] - b0[0]) / (b1[1] - b0[1]) if b1[1] > b0[1] else 0.0
            r["per"] = per
            return r

        head = (
            f"{'clients':>8} {'requests':>9} {'req/s':>8} {'prompts/s':>10} {'p50 ms':>8} {'p95 ms':>8} "
            f"{'p99 ms':>8} {'batch':>6} {'srv CPU':>8} {'cli CPU':>8}  statuses"
        )

        def row(conc: int, r: dict) -> str:
            return (
                f"{conc:>8} {sum(r['codes'].values()):>9} "
                f"{r['rps']:>8.1f} {r['pps']:>10.1f} {r['p50']:>8.1f} {r['p95']:>8.1f} {r['p99']:>8.1f} "
                f"{r['mean_batch']:>6.1f} {r['server_cpu_ms']:>6.2f}ms {r['client_cpu_ms']:>6.2f}ms  "
                f"{fmt_codes(r['codes'])}"
            )

        # warm-up: the same prompts the in-process side warmed on, 4 requests per connection
        phase(32, pools["warm"])
        results = {}
        print("\n/v1/screen, one prompt per request (the targets are judged on the 32-client row)")
        print(head)
        for conc in screen_counts:
            results[conc] = phase(conc, pools[conc])
            print(row(conc, results[conc]))
        multi = None
        if n_multi:
            multi = phase(32, pools["multi"], k_multi)
            print(f"\n/v1/screen, {k_multi} prompts per request (not used for the targets)")
            print(head)
            print(row(32, multi))
        floor = run_async(
            run_clients(url, 32, 1000 if not q else 300, lambda i: ("GET", "/healthz", {}), hdr, proc.pid)
        )
        print(
            f"\nHTTP floor: GET /healthz at 32 clients {floor['rps']:.0f} req/s, CPU per request: server "
            f"{floor['server_cpu_ms']:.2f} ms, client {floor['client_cpu_ms']:.2f} ms"
        )
        print("in-process batched screen again (the server idle) ...")
        inproc_after, cpu_after = in_process_screen(args.policy, pools["warm"], pools[32], env, work)
        inproc, cpu_inproc = (inproc_before + inproc_after) / 2, (cpu_before + cpu_after) / 2
        s32 = results[32]
        ratio = s32["pps"] / inproc
        cpu_served = s32["server_cpu_ms"] + s32["client_cpu_ms"]
        print(
            f"  after: {inproc_after:.1f} prompts/s ({cpu_after:.2f} ms CPU per prompt); yardstick (mean) "
            f"{inproc:.1f} prompts/s (before/after differ by {abs(inproc_before - inproc_after) / inproc:.0%}: "
            f"the machine's other load)"
        )
        print(
            f"  CPU per prompt (less sensitive to other load than wall time): in-process {cpu_inproc:.2f} ms, "
            f"served at 32 clients {s32['server_cpu_ms']:.2f} ms server + {s32['client_cpu_ms']:.2f} ms client "
            f"= {cpu_inproc / cpu_served:.0%} CPU efficiency"
        )
        print(
            f"  32 clients, one prompt per request: {s32['pps']:.1f} prompts/s = {ratio:.0%} of in-process "
            f"(target >= 80 %), p99 {s32['p99']:.1f} ms (target <= 100; closed loop: the mean latency is "
            f"32 / {s32['rps']:.0f} req/s = {32000 / s32['rps']:.0f} ms), 5xx {five_xx(s32['codes'])}"
        )
        if multi:
            print(
                f"  32 clients, {k_multi} prompts per request: {multi['pps']:.1f} prompts/s "
                f"= {multi['pps'] / inproc:.0%} of in-process"
            )
        screen_ok = five_xx(s32["codes"]) == 0 and ratio >= 0.8 and s32["p99"] <= 100
        fields = {
            "ready_s": f"{ready_s:.1f}",
            "inprocess_screen_pps": f"{inproc:.1f}",
            "inprocess_before_pps": f"{inproc_before:.1f}",
            "inprocess_after_pps": f"{inproc_after:.1f}",
            "inprocess_cpu_ms_per_prompt": f"{cpu_inproc:.2f}",
            **{f"screen_c{c}_rps": f"{r['rps']:.1f}" for c, r in results.items()},
            **{f"screen_c{c}_p99_ms": f"{r['p99']:.1f}" for c, r in results.items()},
            "screen_c32_pps": f"{s32['pps']:.1f}",
            "screen_c32_vs_inprocess": f"{ratio:.2f}",
            "screen_c32_mean_batch": f"{s32['mean_batch']:.1f}",
            "screen_c32_server_cpu_ms": f"{s32['server_cpu_ms']:.2f}",
            "screen_c32_client_cpu_ms": f"{s32['client_cpu_ms']:.2f}",
            "screen_c32_cpu_efficiency": f"{cpu_inproc / cpu_served:.2f}",
            "screen_5xx": sum(five_xx(r["codes"]) for r in results.values()),
            "healthz_c32_rps": f"{floor['rps']:.0f}",
            **(
                {
                    f"screen_c32_k{k_multi}_pps": f"{multi['pps']:.1f}",
                    f"screen_c32_k{k_multi}_p99_ms": f"{multi['p99']:.1f}",
                }
                if multi
                else {}
            ),
            "screen_targets_met": int(screen_ok),
            "target_basis": "c32_single_prompt",
        }

        if args.screen_only:
            fields.update({"loadavg_1m": f"{os.getloadavg()[0]:.1f}", "cpus": os.cpu_count()})
            print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))
            return 0

        # generation with a reload every second
        stop = threading.Event()
        reloads = Counter()

        def reloader():
            # one reload per second on the clock (back to back when a reload takes longer than that)
            v, t_next = 0, time.monotonic() + 1.0
            while not stop.wait(max(0.0, t_next - time.monotonic())):
                v += 1
                t_next += 1.0
                pol.write_text(yaml.safe_dump(policy_doc(args.policy, v)), encoding="utf-8")
                try:
                    r = httpx.post(url + "/admin/reload", headers={"Authorization": f"Bearer {admin}"}, timeout=60)
                    reloads[r.status_code] += 1
                except httpx.HTTPError as e:
                    reloads[type(e).__name__] += 1

        def gen_req(model):
            return lambda i: (
                "POST",
                "/v1/images/generations",
                {"json": {"model": model, "prompt": PROMPTS[i % len(PROMPTS)], "n": 1}},
            )

        audit = work / "audit.jsonl"
        before = len(audit.read_text().splitlines()) if audit.is_file() else 0
        th = threading.Thread(target=reloader, daemon=True)
        th.start()
        g = run_async(run_clients(url, 8, n_gen, gen_req("demo"), hdr))
        stop.set()
        th.join(10)
        small = run_async(run_clients(url, 8, n_gen, gen_req("demo-small-queue"), hdr))
        time.sleep(0.5)
        lines = [json.loads(x) for x in audit.read_text().splitlines()[before:]] if audit.is_file() else []
        per_id = Counter(x["request_id"] for x in lines)
        answered = [
            b.get("guard", {}).get("request_id") or b.get("error", {}).get("request_id")
            for b in g["bodies"] + small["bodies"]
        ]
        audited_once = sum(1 for rid in answered if per_id.get(rid) == 1)
        shas = Counter(
            b.get("guard", {}).get("policy", {}).get("sha256") or b.get("error", {}).get("policy_sha256")
            for b in g["bodies"]
        )
        print("\ngeneration on the demo deployment (64x64, 2 steps), 8 clients")
        for name, r in (("demo, queue 16, reload every 1 s", g), ("demo-small-queue, queue 2", small)):
            print(
                f"  {name:<36} {r['rps']:.2f} req/s  p50 {r['p50']:.0f} ms  p95 {r['p95']:.0f} ms  "
                f"p99 {r['p99']:.0f} ms  {fmt_codes(r['codes'])}"
            )
        print(f"  reloads during the run: {fmt_codes(dict(reloads))}; policies seen by responses: {len(shas)}")
        print(
            f"  audit: {len(lines)} lines for {len(answered)} answered requests; audited exactly once: {audited_once}"
        )
        gen_5xx = five_xx(g["codes"]) + five_xx(small["codes"])
        gen_ok = (
            gen_5xx == 0
            and audited_once == len(answered) == len(lines)
            and g["codes"].get(429, 0) == 0
            and small["codes"].get(429, 0) > 0
            and reloads.get(200, 0) == sum(reloads.values())
        )
        gen_wall = g["wall_s"]
        fields.update(
            {
                "gen_c8_rps": f"{g['rps']:.2f}",
                "gen_c8_p99_ms": f"{g['p99']:.0f}",
                "gen_5xx": gen_5xx,
                "gen_429_big_queue": g["codes"].get(429, 0),
                "gen_429_small_queue": small["codes"].get(429, 0),
                "reloads_ok": reloads.get(200, 0),
                "reloads_total": sum(reloads.values()),
                "reloads_per_s": f"{sum(reloads.values()) / gen_wall:.2f}",
                "audit_lines": len(lines),
                "answered": len(answered),
                "audited_once": audited_once,
                "gen_targets_met": int(gen_ok),
                "loadavg_1m": f"{os.getloadavg()[0]:.1f}",
                "cpus": os.cpu_count(),
            }
        )
        print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))
        return 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


if __name__ == "__main__":
    raise SystemExit(main())
