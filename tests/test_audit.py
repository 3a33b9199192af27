"""Audit log: one whole JSON line per image, even with 8 threads generating at once."""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections import Counter

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
    assert Counter(e["thread"] for e in events) == {t: 180 for t in range(8)}
    # each write's lines stay together and in order
    for n in range(0, len(events), 3):
        assert [e["k"] for e in events[n:n + 3]] == [0, 1, 2]
        assert len({(e["thread"], e["i"]) for e in events[n:n + 3]}) == 1


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
                base, scheduler=DDIMScheduler.from_config(base.scheduler.config),
                tokenizer=copy.deepcopy(base.tokenizer))
            for r in range(2):
                p([f"a lighthouse number {t}", "a photo of a naked woman"], num_images_per_prompt=2,
                  generator=torch.Generator().manual_seed(t * 10 + r), output_type="np", **FAST)
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
    digest = "sha256:" + hashlib.sha256("a photo of a naked woman".encode()).hexdigest()
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
