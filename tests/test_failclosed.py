"""Fail-closed, once: a failure in any defence stage, in the guidance hooks, in the latent decode, in
the audit sink or in the pipeline itself blocks the request under ``fail_open: false`` (or raises, for
the pipeline's own errors) and writes exactly one audit line per image naming the error."""

from __future__ import annotations

import json
import logging

import numpy as np
import PIL.Image
import pytest
import torch

import guard
from conftest import make_policy, tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMG = PIL.Image.fromarray((np.random.RandomState(0).rand(64, 64, 3) * 255).astype("uint8"))
PROMPTS = ["a cat on a sofa", "a red bicycle"]
NIPP = 2


def i2i():
    return tiny("img2img")


def policy(log, fail_open):
    return make_policy(
        fail_open=fail_open,
        audit={"path": str(log)},
        screen={
            "threshold": 0.6,
            "escalate_margin": 0.05,
            "generator_space": {"enabled": True, "threshold": 0.999, "action": "block"},
        },
        guidance={"concepts": ["sexual.nudity"], "apply": "always"},
    )


def lines(log):
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


class Boom(RuntimeError):
    pass


def _inject(where, g, monkeypatch):
    """Make one part fail; returns the text the error must contain."""
    runner = g.guard_runner

    def boom(*a, **k):
        raise Boom(f"{where} exploded")

    if where in ("prompt_screen", "generator_space", "input_images", "output_check"):
        runner.stage(where)  # the stage's enabled() still decides whether it runs
        monkeypatch.setattr(runner.stage(where), "run", boom)
    elif where == "guidance_setup":
        monkeypatch.setattr(guard.guidance, "prepare", boom)
    elif where == "guidance_hook":
        calls = {"n": 0}
        real = guard.guidance.GuidanceState.step_index

        def step_index(self, t):  # fine on the first step, fails on the second
            calls["n"] += 1
            if calls["n"] > 1:
                raise Boom("guidance_hook exploded")
            return real(self, t)

        monkeypatch.setattr(guard.guidance.GuidanceState, "step_index", step_index)
    elif where == "decode":
        monkeypatch.setattr(g, "_guard_decode_latents", boom)
    elif where == "audit":
        monkeypatch.setattr(runner.audit, "write", lambda events: (_ for _ in ()).throw(OSError("disk full")))
        return "disk full"
    elif where == "pipeline":
        h = g.unet.register_forward_pre_hook(lambda m, a, k: boom(), with_kwargs=True)
        monkeypatch.setattr(g, "_test_hook", h, raising=False)
    return f"{where} exploded"


WHERE = [
    "prompt_screen",
    "generator_space",
    "input_images",
    "guidance_setup",
    "guidance_hook",
    "decode",
    "output_check",
    "audit",
    "pipeline",
]


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail_closed", "fail_open"])
@pytest.mark.parametrize("where", WHERE)
def test_a_failure_anywhere_blocks_and_is_audited_once_per_image(where, fail_open, tmp_path, monkeypatch, caplog):
    log = tmp_path / "audit.jsonl"
    g = guard.protect(i2i(), policy(log, fail_open))
    text = _inject(where, g, monkeypatch)
    kw = dict(
        image=IMG,
        strength=1.0,
        num_inference_steps=2,
        num_images_per_prompt=NIPP,
        output_type="latent" if where == "decode" else "np",
        generator=torch.Generator().manual_seed(0),
    )
    n_images = len(PROMPTS) * NIPP
    try:
        if where == "pipeline":
            with pytest.raises(Boom):  # the pipeline's own error is re-raised ...
                g(PROMPTS, **kw)
            events = lines(log)  # ... after its audit lines are written
            assert len(events) == n_images
            assert all(e["decision"] == "blocked" and e["blocked_by"] == "error" and text in e["error"] for e in events)
            return
        if where == "audit":
            caplog.set_level(logging.ERROR, logger="guard.core")
            if not fail_open:
                with pytest.raises(guard.GuardError, match="audit lines were not written: disk full"):
                    g(PROMPTS, **kw)  # an unaudited request does not go out
            else:
                out = g(PROMPTS, **kw)
                assert any("audit log not written: disk full" in e for e in out.guard_report.errors)
            # the lines the sink refused are in the error log, one per image, not lost
            rec = [r for r in caplog.records if "not written" in r.getMessage()]
            assert len(rec) == 1 and rec[0].getMessage().count("'request_id'") == n_images
            return
        out = g(PROMPTS, **kw)
    finally:
        h = getattr(g, "_test_hook", None)
        if h is not None:
            h.remove()
        guard.unprotect(g)
    rep = out.guard_report
    events = lines(log)
    assert len(events) == n_images == len(rep.images)
    assert len({e["request_id"] for e in events}) == 1
    assert any(text in e for e in rep.errors), rep.errors
    assert all(text in e["error"] for e in events), [e.get("error") for e in events]
    assert all(im.error and text in im.error for im in rep.images)
    assert rep.failed == list(range(n_images))
    if fail_open:  # a warning: images go out, the error is reported
        assert out.nsfw_content_detected == [False] * n_images
        assert all(e["decision"] == "allowed" for e in events)
    else:
        assert out.nsfw_content_detected == [True] * n_images
        assert all(e["decision"] == "blocked" and e["blocked_by"] == "error" for e in events)
        imgs = out.images if isinstance(out.images, np.ndarray) else out.images.numpy()
        assert np.abs(imgs).max() == 0  # nothing of a request with a failed defence goes out


def test_a_stage_returning_the_wrong_number_of_verdicts_fails_closed(tmp_path, monkeypatch):
    log = tmp_path / "audit.jsonl"
    g = guard.protect(i2i(), policy(log, False))
    monkeypatch.setattr(g.guard_runner.stage("prompt_screen"), "run", lambda req: [])
    out = g(PROMPTS, image=IMG, strength=1.0, num_inference_steps=2, output_type="np")
    assert out.nsfw_content_detected == [True, True]
    assert "returned 0 verdicts for 2 items" in out.guard_report.errors[0]
    assert len(lines(log)) == 2
    guard.unprotect(g)
