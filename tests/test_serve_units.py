"""``guard serve`` parts in-process: config validation, keys, the screen micro-batcher, the worker
pool (one pipeline object per worker thread), policy slots' validated reload, and a graceful
shutdown of a real server process."""

from __future__ import annotations

import concurrent.futures
import hashlib
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import yaml

from conftest import make_policy
from guard.errors import PolicyError

pytest.importorskip("fastapi")

from guard.serve.auth import AuthError, KeyRing
from guard.serve.config import config_from_dict, default_config, hash_key, load_config

ROOT = Path(__file__).resolve().parents[1]
H = hash_key("k1")


def write(tmp_path: Path, data, name="serve.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return p


# ---------------------------------------------------------------------- config


def test_default_config_has_the_demo_and_a_screen_deployment():
    cfg = default_config()
    kinds = {d.name: ("screen" if d.screen_only else d.kind or "text2img") for d in cfg.deployments}
    assert kinds == {"demo": "text2img", "demo-img2img": "img2img", "demo-inpaint": "inpaint", "screen": "screen"}
    assert not cfg.auth_enabled


def test_example_config_validates():
    cfg = load_config(ROOT / "examples" / "serve.yaml")
    assert cfg.auth_enabled and cfg.deployments[0].name


@pytest.mark.parametrize(
    "doc,needle",
    [
        (
            "version: 1\ndeployments:\n  - name: a\n    screen_only: true\ntenants:\n  - name: t\n    keys: [secret]\n",
            r"serve\.yaml:7:\d+: tenants\[0\]\.keys",
        ),
        (
            "version: 1\ndeployments:\n  - name: a\n    screen_only: true\n    pool_size: 2\n",
            r"serve\.yaml:5:\d+: deployments\[0\]\.pool_size.*pool",
        ),
        (
            "version: 1\ndeployments:\n  - name: a\n    screen_only: true\n  - name: a\n    screen_only: true\n",
            r"unique; repeated: a",
        ),
        ("version: 1\ndeployments:\n  - name: a\n    screen_only: true\n    pipeline: demo\n", r"screen_only"),
        ("version: 1\ndeployments:\n  - name: a\n    pool: 2\n", r"give `pipeline`"),
        (
            f"version: 1\ndeployments:\n  - name: a\n    screen_only: true\ntenants:\n  - name: t\n    keys: ['{H}']\n"
            "    deployments: [b]\n",
            r"tenant 't' names deployment 'b'",
        ),
        ("version: 1\ndeployments: []\n", r"deployments"),
        ("version: 1\ndeployments:\n  - name: a\n    screen_only: true\nlimits:\n  max_n: true\n", r"limits\.max_n"),
    ],
)
def test_config_errors_name_file_line_and_key(tmp_path, doc, needle):
    import re

    with pytest.raises(PolicyError) as e:
        load_config(write(tmp_path, doc))
    assert re.search(needle, str(e.value), re.S), str(e.value)


def test_server_refuses_a_policy_error_at_startup_with_file_line(tmp_path):
    from guard.serve.state import ServerState

    write(tmp_path, "version: 1\nname: bad\nscreen:\n  threshhold: 0.5\n", "bad.yaml")
    cfg = config_from_dict(
        {"version": 1, "deployments": [{"name": "s", "screen_only": True, "policy": "bad.yaml"}]}, base_dir=tmp_path
    )
    with pytest.raises(PolicyError, match=r"(?s)deployment .s.*bad\.yaml:4:\d+.*threshhold"):
        ServerState(cfg)


# ---------------------------------------------------------------------- keys


def test_hash_key_and_the_cli_helper():
    from typer.testing import CliRunner

    from guard.serve.cli import hash_key_command, serve_app

    assert hash_key("abc") == "sha256:" + hashlib.sha256(b"abc").hexdigest()
    assert hash_key_command("abc") == ("abc", hash_key("abc"))
    k, h = hash_key_command(generate=True)
    assert k.startswith("gk_") and len(k) > 40 and h == hash_key(k)
    r = CliRunner().invoke(serve_app, ["hash-key", "abc"])
    assert r.exit_code == 0 and r.stdout.strip() == hash_key("abc")
    r = CliRunner().invoke(serve_app, ["hash-key"], input="from-stdin\n")
    assert r.exit_code == 0 and r.stdout.strip() == hash_key("from-stdin")
    r = CliRunner().invoke(serve_app, ["hash-key", " padded "])
    assert r.exit_code == 2 and "whitespace" in r.output


def test_keyring_401_403_and_admin():
    cfg = config_from_dict(
        {
            "version": 1,
            "deployments": [{"name": "a", "screen_only": True}, {"name": "b", "screen_only": True}],
            "tenants": [{"name": "t", "keys": [hash_key("k1")], "deployments": ["a"]}],
            "admin_keys": [hash_key("adm")],
        }
    )
    ring = KeyRing(cfg)
    t = ring.tenant("Bearer k1")
    assert t.name == "t" and t.allows("a") and not t.allows("b")
    for header, reason in ((None, "missing"), ("Bearer", "missing"), ("Token k1", "missing"), ("Bearer k2", "invalid")):
        with pytest.raises(AuthError) as e:
            ring.tenant(header)
        assert e.value.status == 401 and e.value.reason == reason and "k1" not in str(e.value)
    ring.check_admin("Bearer adm")
    with pytest.raises(AuthError) as e:
        ring.check_admin("Bearer k1")
    assert e.value.status == 403
    no_admin = KeyRing(config_from_dict({"version": 1, "deployments": [{"name": "a", "screen_only": True}]}))
    assert no_admin.tenant(None).allows("anything")  # no tenants: auth off
    with pytest.raises(AuthError, match="no admin key"):
        no_admin.check_admin("Bearer x")


# ---------------------------------------------------------------------- micro-batcher


@pytest.fixture(scope="module")
def guard_obj():
    from guard.core import Guard

    return Guard(make_policy()).warmup()


def test_batcher_merges_concurrent_requests_and_matches_solo(guard_obj):
    from guard.serve.batcher import ScreenBatcher

    b = ScreenBatcher(guard_obj, max_wait_s=0.02, max_batch=64)
    try:
        prompts = [f"a photo of a red bicycle number {i}" for i in range(20)] + ["a naked woman"] * 4
        solo = guard_obj.screen_prompts(prompts)
        barrier = threading.Barrier(len(prompts))

        def one(p):
            barrier.wait()
            return b.submit([p]).result(30)

        with concurrent.futures.ThreadPoolExecutor(len(prompts)) as ex:
            got = list(ex.map(one, prompts))
        assert max(g.batch_prompts for g in got) > 1
        for s, g in zip(solo, got, strict=True):
            r = g.results[0]
            assert r.index == 0 and r.decision == s.decision and r.concept == s.concept
            assert abs(r.score - s.score) <= 1e-5  # float32 kernels of another batch layout
        # a request alone waits at most max_wait_s for company (plus scheduling slack on a loaded machine)
        t0 = time.perf_counter()
        alone = b.submit(["a quiet lake"]).result(30)
        assert alone.batch_prompts == 1 and alone.wait_ms <= 20 + 30
        assert time.perf_counter() - t0 < 5
    finally:
        b.close()


def test_batcher_queue_bound_and_fail_closed(guard_obj, monkeypatch):
    from guard.core import Guard
    from guard.serve.batcher import BatcherClosed, QueueFull, ScreenBatcher

    b = ScreenBatcher(guard_obj, max_pending=2)
    with pytest.raises(QueueFull):
        b.submit(["a", "b", "c"])
    b.close()
    with pytest.raises(BatcherClosed):
        b.submit(["a"])
    g = Guard(make_policy())
    monkeypatch.setattr(type(g.screen), "screen_batch", lambda self, p: (_ for _ in ()).throw(RuntimeError("boom")))
    b = ScreenBatcher(g)
    try:
        out = b.submit(["a watercolor of a lake", "a cat"]).result(30)
        assert [r.decision for r in out.results] == ["block", "block"]
        assert out.errors and "boom" in out.errors[0] and "fail closed" in out.results[0].reasons[0]
    finally:
        b.close()


def test_batcher_drops_a_request_whose_caller_gave_up_and_serves_the_rest(guard_obj, monkeypatch):
    from guard.serve.batcher import ScreenBatcher

    gate, entered = threading.Event(), threading.Event()
    real = guard_obj.screen_prompts

    def held_first(prompts, report=None):
        if not entered.is_set():
            entered.set()
            assert gate.wait(30)
        return real(prompts, report)

    monkeypatch.setattr(guard_obj, "screen_prompts", held_first)
    b = ScreenBatcher(guard_obj, max_wait_s=0.001)
    try:
        first = b.submit(["a lake"])
        assert entered.wait(30)  # the thread is busy with `first`
        gave_up, kept = b.submit(["a cat"]), b.submit(["a naked woman"])
        assert gave_up.cancel() and b.pending == 2
        gate.set()
        assert first.result(30).results[0].decision == "allow"
        got = kept.result(30)
        assert got.results[0].decision == "block" and got.batch_prompts == 1  # the cancelled one was dropped
        assert b.pending == 0
    finally:
        gate.set()
        b.close()


def test_batcher_async_answers_a_batch_with_one_loop_wakeup_and_matches_solo(guard_obj):
    import asyncio

    from guard.serve.batcher import ScreenBatcher

    prompts = [f"a watercolor of tulips number {i}" for i in range(10)] + ["a naked woman", "a mutilated corpse"]
    solo = guard_obj.screen_prompts(prompts)
    b = ScreenBatcher(guard_obj, max_wait_s=0.05, max_batch=64)

    async def run():
        loop = asyncio.get_running_loop()
        wakeups = []
        real = loop.call_soon_threadsafe

        def counting(cb, *args, **kw):
            wakeups.append(cb)
            return real(cb, *args, **kw)

        loop.call_soon_threadsafe = counting
        try:
            got = await asyncio.gather(*(b.submit_async([p]) for p in prompts))
        finally:
            del loop.call_soon_threadsafe
        return got, wakeups

    try:
        got, wakeups = asyncio.run(run())
        assert {g.batch_prompts for g in got} == {len(prompts)}  # all queued before the 50 ms window closed
        assert len(wakeups) == 1  # twelve requests answered by one call into the loop
        for s, g in zip(solo, got, strict=True):
            r = g.results[0]
            assert r.index == 0 and r.decision == s.decision and r.concept == s.concept
            assert abs(r.score - s.score) <= 1e-5  # float32 kernels of another batch layout
    finally:
        b.close()


def test_batcher_async_drops_a_timed_out_request_unscreened(guard_obj, monkeypatch):
    import asyncio

    from guard.serve.batcher import ScreenBatcher

    gate, entered = threading.Event(), threading.Event()
    real = guard_obj.screen_prompts
    seen: list[list[str]] = []

    def held_first(prompts, report=None):
        seen.append(list(prompts))
        if not entered.is_set():
            entered.set()
            assert gate.wait(30)
        return real(prompts, report)

    monkeypatch.setattr(guard_obj, "screen_prompts", held_first)
    b = ScreenBatcher(guard_obj, max_wait_s=0.001)

    async def run():
        first = b.submit_async(["a lake"])
        await asyncio.to_thread(entered.wait, 30)  # the thread is busy with `first`
        late, kept = b.submit_async(["a cat"]), b.submit_async(["a naked woman"])
        late.set_exception(asyncio.TimeoutError())  # what the endpoint's deadline does
        gate.set()
        with pytest.raises(asyncio.TimeoutError):
            await late
        return await first, await kept

    try:
        first, kept = asyncio.run(run())
        assert first.results[0].decision == "allow"
        assert kept.results[0].decision == "block" and kept.batch_prompts == 1
        assert ["a cat"] not in seen and b.pending == 0
    finally:
        gate.set()
        b.close()


def _asgi_app(tmp_path, fast_path: bool):
    from guard.serve.app import create_app

    tmp_path.mkdir()
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(make_policy()), encoding="utf-8")
    cfg = config_from_dict(
        {
            "version": 1,
            "limits": {"max_prompt_chars": 100, "max_prompts": 4},
            "reload": {"poll_seconds": 0},
            "screen": {"fast_path": fast_path, "max_wait_ms": 1},
            "deployments": [{"name": "screen", "screen_only": True, "policy": "policy.yaml"}],
            "tenants": [{"name": "t", "keys": [H]}],
        },
        tmp_path,
    )
    app = create_app(cfg)
    app.state.guard.load()
    return app


def test_screen_fast_path_answers_exactly_as_the_fastapi_route(tmp_path):
    """The same requests through the ASGI fast path and through the FastAPI route: the same status,
    body (less the request id and timings) and metrics, for good requests and for every kind of error."""
    import asyncio

    ok = {"deployment": "screen", "prompts": ["a photo of a naked woman", "a watercolor of a lighthouse"]}
    cases = [
        ({"json": ok}, {"Authorization": "Bearer k1"}),
        ({"json": ok}, {}),  # 401
        ({"json": ok}, {"Authorization": "Bearer nope"}),  # 401
        ({"json": {**ok, "deployment": "screne"}}, {"Authorization": "Bearer k1"}),  # 404 with a suggestion
        ({"json": {**ok, "prompts": ["x" * 101]}}, {"Authorization": "Bearer k1"}),  # 422 prompts[0]
        ({"json": {**ok, "prompts": ["x"] * 5}}, {"Authorization": "Bearer k1"}),  # 422 too many
        ({"json": {**ok, "prompts": []}}, {"Authorization": "Bearer k1"}),  # 422 from the model
        ({"json": {**ok, "prompts": [3]}}, {"Authorization": "Bearer k1"}),
        ({"json": {**ok, "extra": 1}}, {"Authorization": "Bearer k1"}),
        ({"content": b'{"deployment": "screen", "prompts": ["a \\ud800 b"]}'}, {"Authorization": "Bearer k1"}),
        ({"content": b'{"deployment": '}, {"Authorization": "Bearer k1"}),  # bad JSON
        ({"content": b"deployment=screen"}, {"Authorization": "Bearer k1", "Content-Type": "text/plain"}),
    ]

    async def answers(app):
        out = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            for kw, hdr in cases:
                if "content" in kw:
                    hdr = {"Content-Type": "application/json", **hdr}
                r = await c.post("/v1/screen", headers=hdr, **kw)
                body = r.json()
                body.pop("request_id", None)
                body.pop("timings_ms", None)
                out.append((r.status_code, body, r.headers.get("x-guard-policy-sha256")))
            metrics = (await c.get("/metrics")).text
        counts = sorted(x for x in metrics.splitlines() if x.startswith("guard_serve_requests_total{"))
        return out, counts

    fast_app, route_app = _asgi_app(tmp_path / "a", True), _asgi_app(tmp_path / "b", False)
    stacks = [[m.cls.__name__ for m in a.user_middleware] for a in (fast_app, route_app)]
    assert "ScreenFastPath" in stacks[0] and "ScreenFastPath" not in stacks[1]
    try:
        fast, fast_counts = asyncio.run(answers(fast_app))
        route, route_counts = asyncio.run(answers(route_app))
    finally:
        fast_app.state.guard.close()
        route_app.state.guard.close()
    assert [x[0] for x in fast] == [200, 401, 401, 404, 422, 422, 422, 422, 422, 422, 422, 422]
    assert fast[0][1]["results"][0]["decision"] == "block" and fast[0][2]
    for f, r in zip(fast, route, strict=True):
        assert f[0] == r[0] and f[2] == r[2]
        if f[0] == 200:  # two screens of one policy: scores equal up to float32 rounding (rounded to 1e-4)
            for a, b in zip(f[1].pop("results"), r[1].pop("results"), strict=True):
                assert abs(a.pop("score") - b.pop("score")) <= 2e-4
                for m, n in zip(a.pop("matches"), b.pop("matches"), strict=True):
                    assert abs(m.pop("score") - n.pop("score")) <= 2e-4 and m == n
                assert a == b
        assert f[1] == r[1]
    assert fast_counts == route_counts and any('endpoint="/v1/screen",status="200"' in x for x in fast_counts)


# ---------------------------------------------------------------------- worker pool


@pytest.fixture(scope="module")
def component():
    from guard.pipelines import GuardComponent

    return GuardComponent.from_policy(make_policy())


def test_workers_share_weights_but_not_scheduler_or_tokenizer(tiny_pipe, component):
    from guard.pipelines import GuardedStableDiffusionImg2ImgPipeline, GuardedStableDiffusionPipeline
    from guard.serve.pool import worker_copy

    a = worker_copy(tiny_pipe, GuardedStableDiffusionPipeline, component)
    b = worker_copy(tiny_pipe, GuardedStableDiffusionPipeline, component)
    c = worker_copy(tiny_pipe, GuardedStableDiffusionImg2ImgPipeline, component)
    assert a is not b and a.unet is b.unet is c.unet is tiny_pipe.unet and a.vae is b.vae
    assert len({id(p.scheduler) for p in (a, b, c, tiny_pipe)}) == 4
    assert len({id(p.tokenizer) for p in (a, b, c, tiny_pipe)}) == 4
    assert a.guard is component and a.tokenizer("a cat").input_ids == tiny_pipe.tokenizer("a cat").input_ids


def test_pool_runs_one_call_per_pipeline_at_a_time_and_bounds_its_queue(tiny_pipe, component):
    from guard.pipelines import GuardedStableDiffusionPipeline
    from guard.serve.pool import PipelinePool, PoolFull, worker_copy

    pipes = [worker_copy(tiny_pipe, GuardedStableDiffusionPipeline, component) for _ in range(2)]
    active: dict[int, int] = {}
    threads: dict[int, set] = {}
    calls = {"n": 0}
    lock = threading.Lock()
    for p in pipes:
        sched = p.scheduler
        orig, sid = sched.set_timesteps, id(sched)

        def set_timesteps(*a, _orig=orig, _id=sid, **k):
            with lock:
                active[_id] = active.get(_id, 0) + 1
                assert active[_id] == 1, "two calls at once on one pipeline"
                threads.setdefault(_id, set()).add(threading.get_ident())
                calls["n"] += 1
            time.sleep(0.05)  # widen the window in which a second call would overlap
            with lock:
                active[_id] -= 1
            return _orig(*a, **k)

        sched.set_timesteps = set_timesteps
    rt = SimpleNamespace(component=component)
    pool = PipelinePool("t", pipes, queue_size=3)
    kw = {"prompt": "a lighthouse", "num_inference_steps": 2, "height": 64, "width": 64, "output_type": "pil"}
    jobs = [pool.submit(dict(kw), rt) for _ in range(5)]
    with pytest.raises(PoolFull) as e:
        pool.submit(dict(kw), rt)  # 2 running/admitted + 3 waiting = capacity 5
    assert e.value.retry_after_s >= 1
    cancelled = jobs[-1].future.cancel()  # still waiting: it will never run
    outs = [j.future.result(120) for j in jobs[:-1]]
    pool.close()
    assert cancelled and jobs[-1].future.cancelled()
    assert all(o.guard_report.images[0].decision == "allowed" for o in outs)
    assert calls["n"] == 4
    assert all(len(t) == 1 for t in threads.values())  # each pipeline only ever on its own thread
    assert len(set().union(*threads.values())) == len(threads)


# ---------------------------------------------------------------------- policy slots


def test_slot_reload_ok_unchanged_failed_and_erasers_refused(tmp_path):
    from guard.serve.batcher import ScreenBatcher
    from guard.serve.policies import PolicySlot

    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(make_policy()), encoding="utf-8")
    slot = PolicySlot(
        "d", None, str(p), for_pipeline=True, audit=None, batcher_factory=lambda g, d: ScreenBatcher(g, name=d)
    )
    try:
        first = slot.load()
        assert slot.reload("test")["result"] == "unchanged" and not slot.changed_on_disk()
        p.write_text(yaml.safe_dump(make_policy(name="second")), encoding="utf-8")
        assert slot.changed_on_disk()
        r = slot.reload("test")
        assert r["result"] == "ok" and r["previous_sha256"] == first.sha256 and slot.current.name == "second"
        second = slot.current
        p.write_text("version: 1\nname: x\nconcepts: [\n", encoding="utf-8")
        r = slot.reload("test")
        assert r["result"] == "failed" and "p.yaml:" in r["error"] and slot.current is second
        assert slot.last_error and slot.status()["error"] == r["error"]
        assert not slot.changed_on_disk()  # not retried on every poll, only on the next change
        p.write_text(yaml.safe_dump(make_policy(name="third", erasers=[{"path": "esd.safetensors"}])), "utf-8")
        r = slot.reload("test")
        assert r["result"] == "failed" and "erasers" in r["error"] and "restart" in r["error"]
        assert slot.current is second
    finally:
        slot.close()


def test_a_file_caught_half_written_is_read_again_once_complete(tmp_path, monkeypatch):
    # an editor that truncates and then writes: the reload reads the empty file, and the rest lands
    # before the reload records the file's stamp; the stamp is the one taken before reading, so the
    # next poll sees a change and reads the whole file
    import guard.serve.policies as policies
    from guard.serve.batcher import ScreenBatcher
    from guard.serve.policies import PolicySlot

    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(make_policy()), encoding="utf-8")
    slot = PolicySlot(
        "d", None, str(p), for_pipeline=False, audit=None, batcher_factory=lambda g, d: ScreenBatcher(g, name=d)
    )
    real = policies.load_policy

    def read_then_finish_writing(ref, *a, **k):
        try:
            return real(ref, *a, **k)
        finally:
            p.write_text(yaml.safe_dump(make_policy(name="complete")), encoding="utf-8")

    try:
        slot.load()
        p.write_text("", encoding="utf-8")
        monkeypatch.setattr(policies, "load_policy", read_then_finish_writing)
        r = slot.reload("file change")
        assert r["result"] == "failed" and "empty" in r["error"]
        monkeypatch.setattr(policies, "load_policy", real)
        assert slot.changed_on_disk()
        r = slot.reload("file change")
        assert r["result"] == "ok" and slot.current.name == "complete" and slot.last_error is None
    finally:
        slot.close()


# ---------------------------------------------------------------------- shutdown


def test_graceful_shutdown_finishes_admitted_requests_and_flushes_the_audit_log(tmp_path):
    from conftest import TEST_POLICY
    from serve_harness import Server, write_policy

    write_policy(tmp_path / "p.yaml", TEST_POLICY)
    srv = Server(
        tmp_path,
        {
            "version": 1,
            "audit": {"path": "audit.jsonl"},
            "deployments": [
                {
                    "name": "demo",
                    "pipeline": "demo",
                    "policy": "p.yaml",
                    "pool": 1,
                    "queue": 4,
                    "defaults": {"num_inference_steps": 25},
                }
            ],
        },
    )
    try:
        with httpx.Client(base_url=srv.url, timeout=120) as c:
            with concurrent.futures.ThreadPoolExecutor(3) as ex:
                futs = [
                    ex.submit(c.post, "/v1/images/generations", json={"model": "demo", "prompt": f"a boat {i}"})
                    for i in range(3)
                ]
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    d = c.get("/v1/deployments").json()["data"][0]
                    if d["running"] == 1 and d["queue_depth"] == 2:
                        break
                    time.sleep(0.05)
                srv.signal(signal.SIGTERM)
                outs = [f.result() for f in futs]
        assert [o.status_code for o in outs] == [200, 200, 200]
        # uvicorn re-raises the signal after its clean shutdown, so the exit status is -SIGTERM
        assert srv.proc.wait(60) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in srv.log()
        assert len(srv.audit_lines()) == 3
        assert "audit log(s) flushed" in srv.log()
    finally:
        srv.stop()


# ---------------------------------------------------------------------- fail closed, in the app


def test_a_failing_screen_blocks_the_request_and_is_counted(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from guard.screen.screen import PromptScreen
    from guard.serve.app import create_app

    (tmp_path / "p.yaml").write_text(yaml.safe_dump(make_policy()), encoding="utf-8")
    (tmp_path / "open.yaml").write_text(yaml.safe_dump(make_policy(name="open", fail_open=True)), encoding="utf-8")
    cfg = config_from_dict(
        {
            "version": 1,
            "deployments": [
                {"name": "closed", "screen_only": True, "policy": "p.yaml"},
                {"name": "open", "screen_only": True, "policy": "open.yaml"},
            ],
        },
        base_dir=tmp_path,
    )
    app = create_app(cfg)
    with TestClient(app) as c:
        assert app.state.guard.loaded.wait(120)

        def boom(self, prompts):
            raise RuntimeError("encoder exploded")

        monkeypatch.setattr(PromptScreen, "screen_batch", boom)
        r = c.post("/v1/screen", json={"deployment": "closed", "prompts": ["a watercolor of a lake"]})
        assert r.status_code == 200
        body = r.json()
        assert body["results"][0]["decision"] == "block" and "encoder exploded" in body["errors"][0]
        assert "fail closed" in body["results"][0]["reasons"][0]
        r = c.post("/v1/screen", json={"deployment": "open", "prompts": ["a watercolor of a lake"]})
        assert r.json()["results"][0]["decision"] == "allow" and r.json()["errors"]
        m = c.get("/metrics").text
        assert 'guard_serve_fail_closed_total{deployment="closed",rule="fail_closed",stage="screen"} 1.0' in m
        assert 'guard_serve_fail_closed_total{deployment="open",rule="fail_open",stage="screen"} 1.0' in m
        assert 'guard_serve_prompts_total{category="none",decision="block",deployment="closed",stage="error"} 1.0' in m


def test_a_deployment_that_cannot_load_is_not_ready_and_the_others_serve(tmp_path):
    from fastapi.testclient import TestClient

    from guard.serve.app import create_app

    (tmp_path / "p.yaml").write_text(yaml.safe_dump(make_policy()), encoding="utf-8")
    (tmp_path / "broken.yaml").write_text(
        yaml.safe_dump(
            {"name": "broken", "model": str(tmp_path / "no-such-model"), "policy": "p.yaml", "device": "cpu"}
        ),
        "utf-8",
    )
    cfg = config_from_dict(
        {
            "version": 1,
            "deployments": [
                {"name": "s", "screen_only": True, "policy": "p.yaml"},
                {"name": "broken", "pipeline": "broken.yaml"},
            ],
        },
        base_dir=tmp_path,
    )
    app = create_app(cfg)
    with TestClient(app) as c:
        assert app.state.guard.loaded.wait(120)
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["deployments"]["s"]["ready"] and "no-such-model" in r.json()["deployments"]["broken"]["error"]
        assert c.post("/v1/screen", json={"deployment": "s", "prompts": ["a lake"]}).status_code == 200
        r = c.post("/v1/images/generations", json={"model": "broken", "prompt": "a lake"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready" and r.headers["Retry-After"]
