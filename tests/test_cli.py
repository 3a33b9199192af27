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
    r = runner.invoke(
        app,
        [
            "generate",
            "a red kite",
            "a photo of a naked woman",
            "--pipeline",
            "pipelines/demo.yaml",
            "--policy",
            policy_file,
            "--out",
            str(out),
        ],
    )
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


@pytest.mark.skipif(
    shutil.which("guard") is None and not (sys.prefix and shutil.which("guard", path=f"{sys.prefix}/bin")),
    reason="console script not installed",
)
def test_console_script_is_installed():
    exe = shutil.which("guard") or shutil.which("guard", path=f"{sys.prefix}/bin")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "screen" in r.stdout and "demo" in r.stdout


# ------------------------------------------------------------------ main(), version, exit statuses


def test_version_matches_the_distribution(capsys):
    from importlib import metadata

    from guard.cli import DISTRIBUTION, main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"guard {metadata.version(DISTRIBUTION)}"


def test_main_turns_usage_errors_into_one_line(capsys):
    from guard.cli import main

    assert main(["screen", "--no-such-flag"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: No such option: --no-such-flag (see 'guard screen --help')"]
    assert main(["frobnicate"]) == 2
    assert capsys.readouterr().err.startswith("error: No such command 'frobnicate'")


def test_main_reports_an_internal_error_in_one_line(monkeypatch, capsys):
    import guard.cli.screen as screen_mod
    from guard.cli import main

    def broken(*a, **k):
        raise KeyError("boom")

    monkeypatch.setattr(screen_mod, "read_prompts", broken)
    monkeypatch.delenv("GUARD_DEBUG", raising=False)
    assert main(["screen", "-i", "x.txt"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: internal error: KeyError: 'boom'")
    assert "Traceback" not in err


# ------------------------------------------------------------------ prompt files


def test_csv_quoted_newlines_and_commas_stay_in_one_prompt(tmp_path, policy_file):
    p = tmp_path / "q.csv"
    p.write_text('id,prompt\n1,"a photo of a\nnaked woman, full body"\n2,"a bowl\r\nof fruit"\n', newline="")
    assert read_prompts(p) == ["a photo of a\nnaked woman, full body", "a bowl\r\nof fruit"]
    r = runner.invoke(app, ["screen", "-i", str(p), "-p", policy_file, "--jsonl"])
    assert r.exit_code == 0, r.output
    assert [o["decision"] for o in jsonl(r.output)] == ["block", "allow"]


def test_csv_cell_over_the_csv_module_limit(tmp_path):
    big = "a red kite over the sea " * 6000  # 144,000 characters, over csv's default 131,072
    p = tmp_path / "big.csv"
    p.write_text(f'prompt\n"{big}"\nsmall\n')
    assert read_prompts(p) == [big, "small"]
    import csv

    assert csv.field_size_limit() == 131072  # the raised limit does not leak out of the reader


def test_csv_ragged_rows_and_bad_files_are_named(tmp_path):
    from guard.errors import GuardError

    ragged = tmp_path / "r.csv"
    ragged.write_text("id,prompt\n1,a cat\n2,a dog, on a sofa\n")
    with pytest.raises(GuardError, match=r"r\.csv:3: 3 field\(s\) where the header has 2"):
        read_prompts(ragged)
    dup = tmp_path / "d.csv"
    dup.write_text("prompt,prompt\na,b\n")
    with pytest.raises(GuardError, match="column 'prompt' appears 2 times"):
        read_prompts(dup)
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(GuardError, match="binary file"):
        read_prompts(binary)
    latin = tmp_path / "l.txt"
    latin.write_bytes(b"ok\ncaf\xe9\n")
    with pytest.raises(GuardError, match=r"l\.txt:2:4: not UTF-8"):
        read_prompts(latin)
    with pytest.raises(GuardError, match="is a directory"):
        read_prompts(tmp_path)
    bad_quote = tmp_path / "q.csv"
    bad_quote.write_text('prompt\n"a "cat" here"\n')
    with pytest.raises(GuardError, match=r"q\.csv:2: not valid CSV"):
        read_prompts(bad_quote)


def test_txt_lines_split_at_newlines_only(tmp_path):
    p = tmp_path / "p.txt"
    p.write_bytes("one\u2028still one\r\ntwo\x0cstill two\n\n".encode())
    assert read_prompts(p) == ["one\u2028still one", "two\x0cstill two"]


def test_progress_bar_only_on_a_terminal_and_not_with_quiet(monkeypatch):
    import sys

    from guard.cli.screen import _progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    with _progress(1000, quiet=False, min_items=256) as bar:
        assert not bar.disable
    with _progress(1000, quiet=True, min_items=256) as bar:
        assert bar.disable
    with _progress(100, quiet=False, min_items=256) as bar:
        assert bar.disable
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    with _progress(1000, quiet=False, min_items=256) as bar:
        assert bar.disable


def test_screen_rejects_undecodable_argument_bytes():
    r = runner.invoke(app, ["screen", "a photo of a \udcffnaked woman"])
    assert r.exit_code == 2 and "prompt argument 1 is not valid UTF-8 text (byte 0xff at character 13)" in r.output


# ------------------------------------------------------------------ policy commands


def test_policy_validate_reports_every_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: bad\nscreen:\n  treshold: 0.5\n")
    r = runner.invoke(app, ["policy", "validate", "default", str(bad), str(tmp_path / "gone.yaml"), "strict"])
    assert r.exit_code == 1
    assert r.output.count("OK ") == 2 and "OK strict" in r.output  # the files after the bad ones still ran
    assert "bad.yaml:4:3" in r.output and "gone.yaml" in r.output
    assert "2 of 4 policies invalid" in r.output


def test_policy_show_resolved_and_as_written(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("version: 1\nname: child\nextends: strict\n")
    r = runner.invoke(app, ["policy", "show", str(child), "--resolved"])
    assert r.exit_code == 0
    data = yaml.safe_load(r.output)
    assert data["name"] == "child" and "extends" not in data and len(data["concepts"]) > 10
    from guard.policy import load_policy

    assert r.output.startswith(f"# resolved policy 'child', sha256 {load_policy(str(child)).sha256}")
    r = runner.invoke(app, ["policy", "show", str(child), "--as-written"])
    assert r.exit_code == 0 and r.output == child.read_text()


# ------------------------------------------------------------------ generate, specs


def test_generate_model_dir_keeps_the_saved_policy(tmp_path):
    from guard.pipelines import protect
    from guard.pipelines.tiny import build_tiny_pipeline

    saved = tmp_path / "saved"
    protect(build_tiny_pipeline(), make_policy(name="saved-with-model")).save_pretrained(saved)
    out = tmp_path / "out"
    r = runner.invoke(app, ["generate", "a red kite", "--model", str(saved), "--steps", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "report.json").read_text())["policy"]["name"] == "saved-with-model"
    r = runner.invoke(
        app, ["generate", "a red kite", "--model", str(saved), "--steps", "1", "--out", str(out), "--policy", "strict"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads((out / "report.json").read_text())["policy"]["name"] == "strict"


def test_spec_policy_resolves_against_the_spec_not_the_cwd(tmp_path, monkeypatch):
    from guard.errors import GuardError
    from guard.spec import load_spec

    d = tmp_path / "deploy"
    (d / "pol").mkdir(parents=True)
    (d / "pol" / "mine.yaml").write_text(yaml.safe_dump(make_policy(name="mine")))
    spec_file = d / "spec.yaml"
    spec_file.write_text("name: s\nmodel: builtin:tiny\npolicy: pol/mine.yaml\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_spec(spec_file).policy_ref() == str((d / "pol" / "mine.yaml").resolve())
    spec_file.write_text("name: s\nmodel: builtin:tiny\npolicy: ../policies/default.yaml\n")
    with pytest.raises(GuardError, match=r"pipeline spec 's': policy file not found: '../policies/default.yaml'"):
        load_spec(spec_file).policy_ref()
    assert load_spec("sd15").policy_ref() == "default"  # the built-in spec names a built-in policy
    assert load_spec("demo").policy_ref() == "default"


def test_generate_refuses_a_file_as_out_dir_before_loading(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    r = runner.invoke(app, ["generate", "x", "--pipeline", "demo", "--out", str(f)])
    assert r.exit_code == 2 and "exists and is not a directory" in r.output


# ------------------------------------------------------------------ start-up cost and import noise


def _python(code: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True, timeout=300)


def test_screen_does_not_import_torch_or_diffusers():
    r = _python(
        "import sys\nfrom guard.cli import main\nrc = main(['screen', 'a cat on a sofa', '--jsonl'])\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'torchvision') if m in sys.modules)\n"
        "print('HEAVY', heavy, rc)"
    )
    assert r.returncode == 0, r.stderr
    assert "HEAVY [] 0" in r.stdout


def test_import_prints_no_torchvision_notice():
    r = _python(
        "import guard; guard.GuardedStableDiffusionPipeline; import diffusers.loaders.ip_adapter",
        "-W",
        "error::UserWarning",
    )
    assert r.returncode == 0, r.stderr
    assert "torchvision" not in r.stderr


def test_torchvision_filter_drops_only_that_notice():
    import logging

    from guard._compat import TRANSFORMERS_IMPORT_LOGGER, quiet_torchvision_fallback_notice

    quiet_torchvision_fallback_notice()
    quiet_torchvision_fallback_notice()
    log = logging.getLogger(TRANSFORMERS_IMPORT_LOGGER)
    assert len(log.filters) == 1
    notice = log.makeRecord(
        log.name,
        logging.WARNING,
        __file__,
        1,
        "`XImageProcessor` requires torchvision (not installed); falling back to `XImageProcessorPil`",
        (),
        None,
    )
    other = log.makeRecord(log.name, logging.WARNING, __file__, 1, "some other import problem", (), None)
    assert log.filter(notice) is False and log.filter(other) is True


def _guard_imports(path):
    """Every guard module a file imports, at any depth (function-level imports included)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{a.name}" if node.module == "guard.cli" else node.module for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m == "guard" or m.startswith("guard.")}


def test_no_import_cycle_through_the_cli_package_or_paths():
    from pathlib import Path

    import guard

    root = Path(guard.__file__).resolve().parent
    assert _guard_imports(root / "paths.py") == set()  # imported by anything, so it imports nothing of ours
    # no command module imports the package that imports it (guard.cli itself), lazily or not
    for f in [*(root / "cli").glob("*.py"), root / "erase" / "cli.py"]:
        if f.parent.name == "cli" and f.name in ("__init__.py", "__main__.py"):  # __main__: nothing imports it
            continue
        back = {
            m
            for m in _guard_imports(f)
            if m
            in ("guard.cli", "guard.cli._quiet_libraries", "guard.cli.main", "guard.cli.app", "guard.cli.read_prompts")
        }
        assert not back, f"{f} imports {back}; import from guard.cli.common instead"


def test_python_dash_m_runs_the_cli():
    r = subprocess.run([sys.executable, "-m", "guard.cli", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("guard ")
    r = subprocess.run([sys.executable, "-m", "guard.cli", "nosuch"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: No such command 'nosuch'") and "Traceback" not in r.stderr


def test_train_screen_passes_its_options_to_the_trainer(capsys):
    from guard.cli import main

    assert main(["train-screen", "--help"]) == 0
    assert "--seed" in capsys.readouterr().out
    assert main(["train-screen", "--seed", "x"]) == 2
    assert "invalid int value" in capsys.readouterr().err


def test_screen_runs_through_the_runner_and_fails_closed(policy_file, monkeypatch):
    from guard.screen.screen import PromptScreen

    def broken(self, texts):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(PromptScreen, "screen_batch", broken)
    r = runner.invoke(app, ["screen", "a lighthouse at dusk", "--jsonl", "-p", str(policy_file)])
    assert r.exit_code == 0, r.output
    (obj,) = jsonl(r.output)
    assert obj["decision"] == "block" and "encoder exploded" in obj["reasons"][0]
    assert "fail closed" in obj["reasons"][0]
