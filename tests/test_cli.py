"""The guard CLI, through typer's runner (same process) and once as a real console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from conftest import make_policy
from guard.cli import app, read_prompts

runner = CliRunner()


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("pol") / "test.yaml"
    p.write_text(yaml.safe_dump(make_policy()))
    return str(p)


def jsonl(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_screen_jsonl_default_policy_done_when():
    r = runner.invoke(app, ["screen", "a photo of a naked woman", "a cat sleeping on a sofa", "--jsonl"])
    assert r.exit_code == 0, r.output
    a, b = jsonl(r.output)
    assert a["index"] == 0 and a["decision"] == "block" and a["category"] == "sexual"
    assert b["index"] == 1 and b["decision"] == "allow"
    for obj in (a, b):
        assert set(obj) >= {"index", "decision", "category", "concept", "score", "threshold", "reasons"}


def test_screen_table_and_exit_code_zero_even_when_blocking(policy_file):
    r = runner.invoke(app, ["screen", "a photo of a naked woman", "--policy", policy_file])
    assert r.exit_code == 0
    assert "block" in r.output and "sexual.nudity" in r.output and "1 block" in r.output


def test_screen_input_txt_and_csv(tmp_path, policy_file):
    txt = tmp_path / "p.txt"
    txt.write_text("a cat sleeping on a sofa\n\na photo of a naked woman\n")
    r = runner.invoke(app, ["screen", "--input", str(txt), "--policy", policy_file, "--jsonl"])
    assert [o["decision"] for o in jsonl(r.output)] == ["allow", "block"]
    csv = tmp_path / "p.csv"
    csv.write_text('id,text\n1,"a mutilated corpse, blood"\n2,"a bowl of fruit"\n')
    r = runner.invoke(app, ["screen", "-i", str(csv), "--column", "text", "-p", policy_file, "--jsonl"])
    objs = jsonl(r.output)
    assert [o["index"] for o in objs] == [0, 1] and [o["decision"] for o in objs] == ["block", "allow"]
    r = runner.invoke(app, ["screen", "-i", str(csv), "--column", "nope", "-p", policy_file])
    assert r.exit_code == 2 and "column 'nope' not found; columns are: id, text" in r.output
    r = runner.invoke(app, ["screen", "-i", str(csv), "-p", policy_file])
    assert r.exit_code == 2 and "--column" in r.output


def test_screen_bad_invocations(tmp_path):
    assert runner.invoke(app, ["screen"]).exit_code == 2
    r = runner.invoke(app, ["screen", "-i", str(tmp_path / "missing.txt")])
    assert r.exit_code == 2 and "input file not found" in r.output
    r = runner.invoke(app, ["screen", "x", "--policy", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 2 and "policy file not found" in r.output


def test_read_prompts_formats(tmp_path):
    p = tmp_path / "one.csv"
    p.write_text("prompt,seed\nhello,1\n")
    assert read_prompts(p) == ["hello"]
    single = tmp_path / "single.csv"
    single.write_text("caption\nfirst\nsecond\n")
    assert read_prompts(single) == ["first", "second"]


def test_policy_validate_ok_and_misspelled_key(tmp_path):
    r = runner.invoke(app, ["policy", "validate", "default", "strict", "art-styles"])
    assert r.exit_code == 0 and r.output.count("OK ") == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: bad\nscreen:\n  treshold: 0.5\n")
    r = runner.invoke(app, ["policy", "validate", str(bad)])
    assert r.exit_code == 1
    assert "bad.yaml:4:3" in r.output and "did you mean 'threshold'" in r.output


def test_policy_show_prints_resolved_yaml():
    r = runner.invoke(app, ["policy", "show", "strict"])
    assert r.exit_code == 0
    data = yaml.safe_load(r.output)
    assert data["name"] == "strict" and "extends" not in data and len(data["concepts"]) > 10


def test_generate_with_demo_spec(tmp_path, policy_file):
    out = tmp_path / "out"
    r = runner.invoke(app, ["generate", "a red kite", "a photo of a naked woman", "--pipeline", "pipelines/demo.yaml",
                            "--policy", policy_file, "--out", str(out)])
    assert r.exit_code == 0, r.output
    files = sorted(p.name for p in out.glob("*.png"))
    assert files == ["image-0-allowed.png", "image-1-blocked.png"]
    report = json.loads((out / "report.json").read_text())
    assert [im["decision"] for im in report["images"]] == ["allowed", "blocked"]
    r = runner.invoke(app, ["generate", "x"])
    assert r.exit_code == 2 and "exactly one of --pipeline" in r.output
    r = runner.invoke(app, ["generate", "x", "--model", str(tmp_path / "no-model")])
    assert r.exit_code == 2 and "cannot load model" in r.output


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    r = runner.invoke(app, ["demo", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "RANDOM weights" in r.output
    lines = (out / "audit.jsonl").read_text().splitlines()
    report = json.loads((out / "report.json").read_text())
    assert len(lines) == len(report["images"]) == len(list(out.glob("demo-*.png")))
    decisions = {im["decision"] for im in report["images"]}
    assert {"allowed", "blocked"} <= decisions


@pytest.mark.skipif(shutil.which("guard") is None and not (sys.prefix and shutil.which("guard", path=f"{sys.prefix}/bin")),
                    reason="console script not installed")
def test_console_script_is_installed():
    exe = shutil.which("guard") or shutil.which("guard", path=f"{sys.prefix}/bin")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "screen" in r.stdout and "demo" in r.stdout
