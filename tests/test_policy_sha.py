"""One policy sha256 everywhere: the file as validated (`guard policy validate/show`), the runtime guard,
its report and audit line, and a pipeline saved and loaded again, for a policy with an eraser and a
generator-space calibration given as paths relative to the policy file."""

from __future__ import annotations

import json
import os
import textwrap

import pytest
import torch

import guard
import guard.erase as ge
from conftest import FAST
from guard.policy import load_policy, policy_to_yaml


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A tiny pipeline, an eraser made on it and a calibration for its text encoder, beside a policy."""
    from guard.pipelines.tiny import build_tiny_pipeline
    from guard.screen.generator_space import calibrate, pipeline_encoders, save_calibration

    d = tmp_path_factory.mktemp("shapol")
    pipe = build_tiny_pipeline(seed=0)
    ge.erase(pipe, "a cat", out=d / "art" / "cat.safetensors")
    (d / "pol").mkdir()
    policy_file = d / "pol" / "p.yaml"
    policy_file.write_text(
        textwrap.dedent(f"""\
        version: 1
        name: sha-test
        concepts:
          - id: sexual.nudity
            category: sexual
            phrases: [a naked woman, full frontal nudity]
        screen:
          generator_space:
            calibration: cal.json
        erasers:
          - path: ../art/cat.safetensors
        audit:
          path: {json.dumps(str(d / "audit.jsonl"))}
        output: {{enabled: false}}
        """),
        encoding="utf-8",
    )
    calib = calibrate(pipeline_encoders(pipe), load_policy(policy_file), ["a cat on a sofa", "a tree"], quantile=0.9)
    save_calibration(calib, d / "pol" / "cal.json")
    return d, policy_file


def test_validate_show_runtime_report_audit_and_saved_pipeline_agree(artifacts, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from guard.cli import app
    from guard.pipelines.tiny import build_tiny_pipeline

    d, policy_file = artifacts
    monkeypatch.chdir(tmp_path)  # relative paths come from the policy file, never from the working directory
    want = load_policy(policy_file).sha256

    runner = CliRunner()
    r = runner.invoke(app, ["policy", "validate", str(policy_file)])
    assert r.exit_code == 0, r.output
    assert f"sha256 {want[:12]}" in r.output
    r = runner.invoke(app, ["policy", "show", str(policy_file)])
    assert r.exit_code == 0, r.output
    assert want in r.output

    g = guard.protect(build_tiny_pipeline(seed=0), str(policy_file))
    assert g.guard_policy.sha256 == want
    # the eraser really is the file the policy names, relative to the policy
    applied = ge.applied_erasures(g)
    assert [a["path"] for a in applied] == [os.fspath((d / "art" / "cat.safetensors").resolve())]
    out = g("a cat on a sofa", **FAST)
    assert out.guard_report.policy_sha256 == want
    line = json.loads((d / "audit.jsonl").read_text().splitlines()[-1])
    assert line["policy"]["sha256"] == want

    # saved: the base weights with the policy that names the eraser (loading erases them again), while
    # the live pipeline keeps its erased weights
    erased = {n: p.detach().clone() for n, p in g.unet.named_parameters()}
    g.save_pretrained(tmp_path / "saved")
    assert all(torch.equal(p, erased[n]) for n, p in g.unet.named_parameters())
    stored = json.loads((tmp_path / "saved" / "guard" / "config.json").read_text())["policy"]
    assert stored["erasers"][0]["path"] == "../art/cat.safetensors"  # as written, with its base
    assert stored["base_dir"] == os.fspath((d / "pol").resolve())
    loaded = type(g).from_pretrained(tmp_path / "saved")
    assert loaded.guard_policy.sha256 == want
    assert [a["path"] for a in ge.applied_erasures(loaded)] == [a["path"] for a in applied]
    assert all(torch.equal(p, erased[n]) for n, p in loaded.unet.named_parameters())
    assert loaded("a tree", **FAST).guard_report.policy_sha256 == want

    # the human-readable copy reloads to the same hash and the same artifacts, from anywhere
    resolved = tmp_path / "elsewhere" / "resolved.yaml"
    resolved.parent.mkdir()
    resolved.write_text(policy_to_yaml(g.guard_policy), encoding="utf-8")
    again = load_policy(resolved)
    assert again.sha256 == want
    assert again.resolve_path(again.erasers[0].path) == applied[0]["path"]


def test_sha_ignores_base_dir_but_not_paths(artifacts):
    _, policy_file = artifacts
    p = load_policy(policy_file)
    d = p.model_dump(mode="json", exclude={"extends", "include", "amend"})
    assert load_policy(dict(d, base_dir="/somewhere/else")).sha256 == p.sha256
    d["erasers"][0]["path"] = "other.safetensors"
    assert load_policy(d).sha256 != p.sha256
