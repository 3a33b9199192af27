"""The stage protocol and the runner without a pipeline (what the CLI and the HTTP server use)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

import guard
from conftest import make_policy
from guard.core import Guard
from guard.errors import GuardError, GuardInputError
from guard.stages import PRE_STAGES, STAGES, Request, Stage, Verdict, get_stage, register_stage


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_builtin_stages_are_registered_by_name():
    assert {"prompt_screen", "generator_space", "input_images", "guidance", "output_check"} <= set(STAGES)
    assert PRE_STAGES == ("prompt_screen", "generator_space", "input_images")
    assert STAGES["output_check"].over == "images"
    with pytest.raises(GuardError, match="no stage named 'prompt_scren'; did you mean 'prompt_screen'"):
        get_stage("prompt_scren")


def test_verdict_rejects_an_unknown_decision():
    with pytest.raises(GuardError, match="decision 'maybe'; expected one of allow, flag, escalate, block"):
        Verdict("x", 0, "maybe")
    assert Verdict("x", 0, "block", score=0.912345).to_dict()["score"] == 0.9123


def test_register_stage_checks_the_class():
    with pytest.raises(GuardError, match="expects a Stage subclass"):
        register_stage(object)

    class Nameless(Stage):
        pass

    with pytest.raises(GuardError, match="has no `name`"):
        register_stage(Nameless)

    class Clash(Stage):
        name = "prompt_screen"

    with pytest.raises(GuardError, match="stage name 'prompt_screen' is taken"):
        register_stage(Clash)


@register_stage
class LengthStage(Stage):
    """A custom stage (the one docs/extending.md shows): escalates prompts longer than 40 characters."""

    name = "test_length"

    def run(self, request):
        return [
            Verdict(
                self.name,
                i,
                "escalate" if len(t) > 40 else "allow",
                reasons=[f"prompt is {len(t)} characters long"] if len(t) > 40 else [],
            )
            for i, t in enumerate(request.texts)
        ]


def test_a_custom_stage_runs_in_the_runner_and_may_only_raise_decisions(tmp_path):
    g = Guard(make_policy(audit={"path": str(tmp_path / "a.jsonl")})).add_stage("test_length")
    long_benign = "a watercolor painting of a quiet harbour at dawn with boats"
    req = g.run(Request(prompts=["a cat", long_benign, "a photo of a naked woman " * 3]))
    decisions = [s.decision for s in req.screened]
    assert decisions == ["allow", "escalate", "block"]  # the block stays a block
    assert "characters long" in req.screened[1].reasons[-1]
    assert [e["decision"] for e in lines(tmp_path / "a.jsonl")] == ["allowed", "allowed", "blocked"]
    with pytest.raises(GuardError, match="only prompt stages run before denoising"):
        g.add_stage("output_check")
    with pytest.raises(GuardError, match="no stage 'nope' to insert before"):
        g.add_stage("test_length", before="nope")


def test_runner_without_a_pipeline_screens_reports_and_audits(tmp_path):
    log = tmp_path / "a.jsonl"
    g = Guard(make_policy(audit={"path": str(log)}))
    req = g.run(Request(prompts=["a lighthouse at dusk", "a photo of a naked woman"], images_per_prompt=2))
    rep = req.report
    assert [im.decision for im in rep.images] == ["allowed", "allowed", "blocked", "blocked"]
    assert rep.images[2].blocked_by == "screen" and rep.images[2].error is None
    assert len(lines(log)) == 4 and "screen" in rep.timings_ms and "total" in rep.timings_ms
    assert req.verdicts["prompt_screen"][1].concept == "sexual.nudity"


def test_on_block_raise_from_the_runner_is_audited(tmp_path):
    log = tmp_path / "a.jsonl"
    g = Guard(make_policy(on_block="raise", audit={"path": str(log)}))
    with pytest.raises(guard.GuardBlocked, match="prompt 1 blocked") as ei:
        g.run(Request(prompts=["a cat", "a photo of a naked woman"]))
    assert len(ei.value.report.images) == 2 and len(lines(log)) == 2


def test_kept_entry_points_check_their_inputs():
    g = Guard(make_policy())
    for bad in (None, 5, object(), "a single string", ["ok", None]):
        with pytest.raises(GuardInputError, match=r"^Guard.screen_prompts: (expected a list of prompts|prompt 1 must)"):
            g.screen_prompts(bad)
    with pytest.raises(GuardInputError, match="the request has no prompts"):
        g.run(Request(prompts=[]))
    with pytest.raises(GuardInputError, match=r"prompts\[1\] must be a string or None, got int"):
        g.run(Request(prompts=["a", 5], texts=["a", "5"]))
    with pytest.raises(GuardInputError, match="Guard.check_images: images must be a list"):
        g.check_images(None)
    (r,) = g.screen_prompts(["a photo of a naked woman"])
    assert r.decision == "block"
    (v,) = g.check_images([np.zeros((64, 64, 3), dtype=np.uint8)])
    assert v.action == "none" and "nudenet" in v.scores


def test_report_errors_come_from_the_error_field_not_from_words(tmp_path):
    g = Guard(make_policy(audit={"path": str(tmp_path / "a.jsonl")}))
    # a prompt whose screen reason mentions "failed" is not an error
    req = g.run(Request(prompts=["the failed harvest"]))
    assert req.report.images[0].error is None and req.report.failed == []


@pytest.mark.parametrize(
    "module",
    [
        "guard.core",
        "guard.report",
        "guard.audit",
        "guard.stages",
        pytest.param("guard.guidance", marks=pytest.mark.slow),  # torch: seconds per fresh interpreter
        pytest.param("guard.pipelines", marks=pytest.mark.slow),  # diffusers
        "guard.screen.screen",
        "guard.output.check",
    ],
)
def test_each_module_imports_on_its_own(module):
    # a fresh interpreter per module: an import cycle would fail here (partially initialised module)
    r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_report_module_imports_nothing_of_guard_at_run_time():
    src = open(guard.report.__file__, encoding="utf-8").read()
    runtime = src.split("if TYPE_CHECKING:")[0]
    assert not re.search(r"^from guard|^import guard", runtime, re.M)
