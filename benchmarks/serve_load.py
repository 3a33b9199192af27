"""Loopback load test of ``guard serve``: bounded async httpx clients against a real server process.

    python benchmarks/serve_load.py [--quick] [--policy default]

Starts ``python -m guard.serve`` on 127.0.0.1 (a free port, a temporary config and audit log), then:

1. in-process batched screen throughput (``Guard.screen_prompts`` on batches of 32) as the yardstick;
2. ``POST /v1/screen`` (one prompt per request) with 1, 8 and 32 concurrent clients, fixed request counts;
3. generation on the demo deployment with 8 clients while the policy file is rewritten and
   ``POST /admin/reload`` called every second (queue large enough: expect no 429), then on a
   deployment whose queue is smaller than the client count (429s expected, nothing else);
4. the audit log checked against the answered requests: every image audited exactly once.

Prints throughput, p50/p95/p99 latency and status counts per phase and ends with one
``RESULT key=value ...`` line. Only loopback; every loop is bounded and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs, q):
    return float(np.percentile(np.asarray(xs) * 1000, q)) if xs else float("nan")


def policy_doc(base: str, variant: int) -> dict:
    """A policy file that changes on every reload (its description), so every reload swaps the sha."""
    return {"version": 1, "name": "bench", "extends": base, "description": f"reload {variant}"}


def in_process_screen(policy: str, n_prompts: int, batch: int = 32) -> float:
    from guard.core import Guard

    g = Guard(policy).warmup()
    g.screen_prompts(PROMPTS[:batch])  # warm
    done, t0 = 0, time.perf_counter()
    while done < n_prompts:
        chunk = [PROMPTS[(done + i) % len(PROMPTS)] for i in range(batch)]
        g.screen_prompts(chunk)
        done += batch
    return done / (time.perf_counter() - t0)


async def run_clients(url: str, concurrency: int, total: int, make_request, headers) -> dict:
    import httpx

    lat: list[float] = []
    codes: Counter = Counter()
    bodies: list = []
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits, headers=headers) as c:

        async def worker():
            for i in counter:
                method, path, kw = make_request(i)
                t0 = time.perf_counter()
                try:
                    r = await c.request(method, path, **kw)
                    codes[r.status_code] += 1
                    if r.status_code in (200, 400):
                        bodies.append(r.json())
                except httpx.HTTPError as e:
                    codes[type(e).__name__] += 1
                lat.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {
        "rps": total / wall,
        "wall_s": wall,
        "p50": pct(lat, 50),
        "p95": pct(lat, 95),
        "p99": pct(lat, 99),
        "codes": dict(codes),
        "bodies": bodies,
    }


def fmt_codes(c: dict) -> str:
    return ",".join(f"{k}:{v}" for k, v in sorted(c.items(), key=lambda kv: str(kv[0])))


def five_xx(c: dict) -> int:
    return sum(v for k, v in c.items() if not isinstance(k, int) or k >= 500)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    ap.add_argument("--policy", default="default", help="policy of both deployments (built-in name or file)")
    ap.add_argument("--gen-requests", type=int, default=None)
    ap.add_argument("--screen-only", action="store_true", help="skip the generation phases")
    ap.add_argument(
        "--server-threads", type=int, default=None, help="OMP_NUM_THREADS of the server process (default: inherited)"
    )
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import httpx

    from guard.serve.config import hash_key

    q = args.quick
    screen_counts = {1: 60 if q else 200, 8: 200 if q else 800, 32: 400 if q else 1600}
    n_gen = args.gen_requests or (16 if q else 48)

    work = Path(tempfile.mkdtemp(prefix="guard-serve-bench-"))
    pol = work / "policy.yaml"
    pol.write_text(yaml.safe_dump(policy_doc(args.policy, 0)), encoding="utf-8")
    key, admin = "bench-key", "bench-admin"
    cfg = {
        "version": 1,
        "audit": {"path": "audit.jsonl"},
        "admin_keys": [hash_key(admin)],
        "reload": {"poll_seconds": 0},  # reloads come from POST /admin/reload, once a second
        "screen": {"max_wait_ms": 5, "max_batch": 64},
        "deployments": [
            {"name": "screen", "screen_only": True, "policy": args.policy},
            {"name": "demo", "pipeline": "demo", "policy": "policy.yaml", "pool": 1, "queue": 16},
            {"name": "demo-small-queue", "pipeline": "demo", "policy": "policy.yaml", "pool": 1, "queue": 2},
        ],
        "tenants": [{"name": "bench", "keys": [hash_key(key)]}],
    }
    (work / "serve.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")

    print(f"in-process batched screen ({args.policy}, batches of 32) ...", flush=True)
    inproc = in_process_screen(args.policy, 320 if q else 1280)
    print(f"  {inproc:.1f} prompts/s")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "server.log", "wb")
    t_start = time.perf_counter()
    env = dict(os.environ)
    if args.server_threads:
        env["OMP_NUM_THREADS"] = str(args.server_threads)
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
        hdr = {"Authorization": f"Bearer {key}"}

        results = {}
        print("\n/v1/screen, one prompt per request")
        print(f"{'clients':>8} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  statuses")
        for conc, total in screen_counts.items():
            asyncio.run(
                run_clients(
                    url,
                    conc,
                    min(total, 4 * conc),
                    lambda i: (
                        "POST",
                        "/v1/screen",
                        {"json": {"deployment": "screen", "prompts": [PROMPTS[i % len(PROMPTS)]]}},
                    ),
                    hdr,
                )
            )  # warm the connections
            r = asyncio.run(
                run_clients(
                    url,
                    conc,
                    total,
                    lambda i: (
                        "POST",
                        "/v1/screen",
                        {"json": {"deployment": "screen", "prompts": [PROMPTS[i % len(PROMPTS)]]}},
                    ),
                    hdr,
                )
            )
            results[conc] = r
            batch = max((b.get("batch_prompts", 1) for b in r["bodies"]), default=0)
            print(
                f"{conc:>8} {total:>9} {r['rps']:>8.1f} {r['p50']:>8.1f} {r['p95']:>8.1f} {r['p99']:>8.1f}  "
                f"{fmt_codes(r['codes'])}  (largest batch {batch})"
            )
        floor = asyncio.run(run_clients(url, 32, 400, lambda i: ("GET", "/healthz", {}), hdr))
        m = httpx.get(url + "/metrics", timeout=10).text
        bsum = sum(float(x.split()[-1]) for x in m.splitlines() if x.startswith("guard_serve_screen_batch_prompts_sum"))
        bcnt = sum(
            float(x.split()[-1]) for x in m.splitlines() if x.startswith("guard_serve_screen_batch_prompts_count")
        )
        avg_batch = bsum / bcnt if bcnt else 0.0
        print(f"  HTTP floor: GET /healthz at 32 clients {floor['rps']:.0f} req/s; mean screen batch {avg_batch:.1f}")
        s32 = results[32]
        print(f"  in-process batched: {inproc:.1f} prompts/s; HTTP at 32 clients = {s32['rps'] / inproc:.0%} of it")

        if args.screen_only:
            print(
                "RESULT "
                + " ".join(
                    [f"ready_s={ready_s:.1f}", f"inprocess_screen_pps={inproc:.1f}"]
                    + [f"screen_c{c}_rps={r['rps']:.1f} screen_c{c}_p99_ms={r['p99']:.1f}" for c, r in results.items()]
                    + [
                        f"screen_c32_vs_inprocess={s32['rps'] / inproc:.2f}",
                        f"screen_5xx={sum(five_xx(r['codes']) for r in results.values())}",
                    ]
                )
            )
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
        g = asyncio.run(run_clients(url, 8, n_gen, gen_req("demo"), hdr))
        stop.set()
        th.join(10)
        small = asyncio.run(run_clients(url, 8, n_gen, gen_req("demo-small-queue"), hdr))
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
        screen_ok = five_xx(s32["codes"]) == 0 and s32["rps"] >= 0.8 * inproc and s32["p99"] <= 100
        gen_ok = (
            gen_5xx == 0
            and audited_once == len(answered) == len(lines)
            and g["codes"].get(429, 0) == 0
            and small["codes"].get(429, 0) > 0
            and reloads.get(200, 0) == sum(reloads.values())
        )
        gen_wall = g["wall_s"]
        fields = {
            "ready_s": f"{ready_s:.1f}",
            "inprocess_screen_pps": f"{inproc:.1f}",
            **{f"screen_c{c}_rps": f"{r['rps']:.1f}" for c, r in results.items()},
            **{f"screen_c{c}_p99_ms": f"{r['p99']:.1f}" for c, r in results.items()},
            "screen_c32_vs_inprocess": f"{s32['rps'] / inproc:.2f}",
            "screen_5xx": sum(five_xx(r["codes"]) for r in results.values()),
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
            "screen_targets_met": int(screen_ok),
            "gen_targets_met": int(gen_ok),
            "loadavg_1m": f"{os.getloadavg()[0]:.1f}",
            "cpus": os.cpu_count(),
        }
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
