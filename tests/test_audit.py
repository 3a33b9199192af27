"""Audit log: one whole JSON line per image, even with 8 threads generating at once."""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections import Counter

import pytest
import torch
from diffusers import DDIMScheduler

import guard
from conftest import FAST, make_policy
from guard.audit import AuditLog
from guard.pipelines import GuardedStableDiffusionPipeline


def read_lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_eight_threads_writing_big_lines_never_interleave(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl")
    payload = "x" * 20_000  # far above PIPE_BUF: only whole writes keep lines apart

    def worker(t):
        for i in range(60):
            log.write([{"thread": t, "i": i, "k": k, "pad": payload} for k in range(3)])

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    events = read_lines(tmp_path / "a.jsonl")
    assert len(events) == 8 * 60 * 3
    assert Counter(e["thread"] for e in events) == dict.fromkeys(range(8), 180)
    # each write's lines stay together and in order
    for n in range(0, len(events), 3):
        assert [e["k"] for e in events[n : n + 3]] == [0, 1, 2]
        assert len({(e["thread"], e["i"]) for e in events[n : n + 3]}) == 1


@pytest.mark.slow  # ~10 s on 2 cores; the AuditLog-level concurrency tests below run by default
def test_eight_threads_generating_at_once(tiny_pipe, tmp_path):
    path = tmp_path / "audit" / "log.jsonl"  # parent directory is created
    policy = make_policy(audit={"path": str(path)})
    base = guard.protect(tiny_pipe, policy)
    errors = []

    def worker(t):
        try:
            # a pipeline per thread with its own scheduler state and tokenizer (neither is
            # thread-safe in diffusers/tokenizers), weights shared
            p = GuardedStableDiffusionPipeline.from_pipe(
                base,
                scheduler=DDIMScheduler.from_config(base.scheduler.config),
                tokenizer=copy.deepcopy(base.tokenizer),
            )
            for r in range(2):
                p(
                    [f"a lighthouse number {t}", "a photo of a naked woman"],
                    num_images_per_prompt=2,
                    generator=torch.Generator().manual_seed(t * 10 + r),
                    output_type="np",
                    **FAST,
                )
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        torch.set_num_threads(torch_threads)
    assert errors == []
    events = read_lines(path)
    assert len(events) == 8 * 2 * 4  # threads x requests x images
    per_request = Counter(e["request_id"] for e in events)
    assert len(per_request) == 16 and set(per_request.values()) == {4}
    for e in events:
        assert e["policy"] == {"name": "test", "sha256": base.guard_policy.sha256}
        assert "prompt" not in e and e["prompt_sha256"].startswith("sha256:")
        assert e["decision"] in ("allowed", "blocked")
        assert set(e) >= {"time", "request_id", "image_index", "screen", "output", "action", "timings_ms"}
    blocked = [e for e in events if e["decision"] == "blocked"]
    assert len(blocked) == 32 and all(e["screen"]["concept"] == "sexual.nudity" for e in blocked)
    digest = "sha256:" + hashlib.sha256(b"a photo of a naked woman").hexdigest()
    assert all(e["prompt_sha256"] == digest for e in blocked)
    allowed = [e for e in events if e["decision"] == "allowed"]
    assert all(e["output"] is not None for e in allowed)


def test_store_prompts_true_keeps_the_text(tiny_pipe, tmp_path):
    path = tmp_path / "log.jsonl"
    g = guard.protect(tiny_pipe, make_policy(audit={"path": str(path), "store_prompts": True}))
    g("a red kite", **FAST)
    (event,) = read_lines(path)
    assert event["prompt"] == "a red kite" and "prompt_sha256" not in event


def test_unwritable_audit_log_fails_closed(tiny_pipe, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    g = guard.protect(tiny_pipe, make_policy(audit={"path": str(blocker / "log.jsonl")}))
    try:
        g("a red kite", **FAST)
    except guard.GuardError as e:
        assert "cannot open audit log" in str(e)
    else:
        raise AssertionError("an unaudited request went out")
    g2 = guard.protect(tiny_pipe, make_policy(fail_open=True, audit={"path": str(blocker / "log.jsonl")}))
    out = g2("a red kite", **FAST)
    assert any("audit log not written" in e for e in out.guard_report.errors)


# ----------------------------------------------------------------------------- short writes, defaults, privacy


def test_short_writes_from_the_os_still_give_whole_lines_under_concurrency(tmp_path, monkeypatch):
    import os

    real = os.write
    sizes = []

    def short_write(fd, data):  # the OS takes at most 7 bytes per call (a signal, a full pipe, NFS...)
        n = real(fd, bytes(memoryview(data)[:7]))
        sizes.append(n)
        return n

    monkeypatch.setattr(os, "write", short_write)
    log = AuditLog(tmp_path / "a.jsonl")

    def worker(t):
        for i in range(10):
            log.write([{"thread": t, "i": i, "k": k, "pad": "y" * 300} for k in range(2)])

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    monkeypatch.setattr(os, "write", real)
    events = read_lines(tmp_path / "a.jsonl")  # every line parses: none was cut or interleaved
    assert len(events) == 6 * 10 * 2 and max(sizes) == 7
    for n in range(0, len(events), 2):
        assert (events[n]["thread"], events[n]["i"]) == (events[n + 1]["thread"], events[n + 1]["i"])


def test_a_write_that_fails_half_way_leaves_no_half_line(tmp_path, monkeypatch):
    import os

    log = AuditLog(tmp_path / "a.jsonl")
    log.write([{"first": 1}])
    real = os.write
    calls = {"n": 0}

    def failing(fd, data):
        calls["n"] += 1
        if calls["n"] == 1:
            return real(fd, bytes(memoryview(data)[:10]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", failing)
    with pytest.raises(guard.GuardError, match="cannot write audit log .*No space left"):
        log.write([{"second": 2}, {"third": 3}])
    monkeypatch.setattr(os, "write", lambda fd, data: 0)
    with pytest.raises(guard.GuardError, match="write returned 0"):  # never spins on a write that takes nothing
        log.write([{"fourth": 4}])
    monkeypatch.setattr(os, "write", real)
    log.write([{"fifth": 5}])
    assert read_lines(tmp_path / "a.jsonl") == [{"first": 1}, {"fifth": 5}]


def test_audit_is_on_by_default_and_off_only_when_asked(tiny_pipe, tmp_path, monkeypatch):
    from guard.core import Guard

    monkeypatch.setenv("GUARD_AUDIT_LOG", str(tmp_path / "env.jsonl"))
    g = guard.protect(tiny_pipe, make_policy())  # no audit section at all
    g("a red kite", **FAST)
    assert len(read_lines(tmp_path / "env.jsonl")) == 1
    monkeypatch.delenv("GUARD_AUDIT_LOG")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert Guard(make_policy()).audit.path == tmp_path / "state" / "guard" / "audit.jsonl"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_STATE_HOME")
    assert Guard(make_policy()).audit.path == tmp_path / "home" / ".local" / "state" / "guard" / "audit.jsonl"
    off = guard.protect(tiny_pipe, make_policy(audit={"enabled": False}))
    assert off.guard_runner.audit is None
    off("a red kite", **FAST)
    assert not (tmp_path / "home" / ".local" / "state" / "guard").exists()


def test_prompts_in_error_messages_are_not_logged_raw(tiny_pipe, tmp_path, monkeypatch):
    secret = "a portrait of my neighbour jane doe"
    for store in (False, True):
        path = tmp_path / f"log{store}.jsonl"
        g = guard.protect(tiny_pipe, make_policy(audit={"path": str(path), "store_prompts": store}))

        def boom(prompts):
            raise ValueError(f"could not embed {prompts[0]!r}")

        monkeypatch.setattr(g.guard_runner.screen, "screen_batch", boom)
        out = g(secret, **FAST)
        assert out.nsfw_content_detected == [True]
        text = path.read_text()
        (event,) = read_lines(path)
        assert "could not embed" in event["error"]
        if store:
            assert secret in event["error"] and event["prompt"] == secret
        else:
            assert secret not in text and "<prompt sha256:" in event["error"]
