"""Fuzz the command line with odd arguments: every run ends with exit 0, 1 or 2, a failure says
``error: ...`` on stderr, and nothing ever prints a traceback or an "internal error" (the safety net in
:func:`guard.cli.main` that would hide an unhandled exception is itself a failure here).

The CLI runs in-process through :func:`guard.cli.main` (the console script's own entry point), with
stdout and stderr captured; a per-run alarm turns a hang into a failure naming the arguments.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import make_policy
from guard.cli import main

#: seconds one CLI run may take before it counts as a hang (a generate on the tiny pipeline takes ~3 s)
HANG_S = 120

#: policy files the loader cannot take yet (tested apart, below), kept out of the fuzzed pool. YAML alias
#: bombs are left to the policy tests: on today's loader one expands to many GB before any alarm fires.
LOADER_GAPS = ("policy-deep.yaml", "policy-alias-bomb.yaml")

FUZZ = settings(
    derandomize=True,
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    f = {}

    def put(name, data):
        p = d / name
        (p.write_bytes if isinstance(data, bytes) else p.write_text)(data)
        f[name] = str(p)

    put("ok.txt", "a cat on a sofa\na photo of a naked woman\n")
    put("ok.csv", 'id,prompt\n1,"a red kite,\nover the sea"\n2,a bowl of fruit\n')
    put("labels.csv", 'prompt,label\n"a corpse, gore",violence\na bowl of fruit,none\n')
    put("ragged.csv", "id,prompt\n1,a cat\n2,a dog,on a sofa\n")
    put("header-only.csv", "x,y\n")
    put("badquote.csv", 'prompt\n"a "cat" here"\n')
    put("huge-cell.csv", 'prompt\n"' + "a red kite over the sea " * 6000 + '"\n')
    put("empty.txt", "")
    put("blank.txt", "\n \n\t\n")
    put("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    put("latin1.txt", b"caf\xe9 au lait\n")
    put("odd.txt", "\u202eevil\u202c\n\u200b\u200b\n🙂🙂🙂\n\ud7ff\ufeff bom inside\n")
    put("policy.yaml", yaml.safe_dump(make_policy()))
    put("policy-typo.yaml", "version: 1\nname: bad\nscreen:\n  treshold: 0.5\n")
    put("policy-notyaml.yaml", "version: [1\nname: {{{\n")
    put("policy-list.yaml", "- 1\n- 2\n")
    put("policy-deep.yaml", "a: " + "[" * 2000 + "]" * 2000 + "\n")
    # a "billion laughs": nine levels of nine aliases each, under 1 KB, expanding to 9**9 nodes if followed
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"] + [
        f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)
    ]
    put("policy-alias-bomb.yaml", "\n".join(levels) + "\n")
    put("spec-bad.yaml", "name: s\nmodel: builtin:tiny\nsteps: 3\n")
    put("spec-badpolicy.yaml", "name: s\nmodel: builtin:tiny\npolicy: ../nowhere/p.yaml\n")
    put("spec-bin.yaml", b"\xff\xfe\x00\x01")
    put("afile", "not a directory")
    fifo = d / "fifo"
    if hasattr(os, "mkfifo"):
        os.mkfifo(fifo)
        f["fifo"] = str(fifo)
    f["missing"] = str(d / "does-not-exist.txt")
    f["missing.csv"] = str(d / "nope.csv")
    f["dir"] = str(d)
    f["devnull"] = os.devnull
    f["out"] = str(d / "out")
    return f


ODD_TEXT = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "\t",
            "a photo of a naked woman",
            "\u202e\u200b",
            "🙂" * 300,
            "ｎａｋｅｄ",
            "\udcff\udcfe",
            "a " * 12000,
            "-",
            "--",
            "--help",
            "=",
            ":",
            "nope.csv:prompt",
            "x" * 300,
            "\x1b[31mred",
            "\ufeff",
        ]
    ),
    st.text(min_size=0, max_size=40),
)
NUMBERS = st.sampled_from(["0", "1", "-1", "3", "abc", "1e9", "99999999999999999999999", "", " 2", "nan"])


def _path(files, name):
    return files.get(name, name)


def argv_strategy(files):
    """argv lists that mostly get past option parsing (required options present, a wrong flag one time in
    six), so most runs reach the code that reads files, loads policies and builds pipelines."""
    names = sorted(n for n in files if n not in LOADER_GAPS)
    path = st.sampled_from(names).map(lambda n: _path(files, n))
    policy = st.one_of(path, st.sampled_from(["default", "strict", "nosuch", "", "../x", "a" * 300, "\udcff"]))
    prompt = ODD_TEXT
    maybe_bogus = st.sampled_from([[], [], [], [], [], ["--bogus"], ["-Z"], ["--policy"], ["--"], ["-"]])

    def opts(pairs, max_size=3):
        return st.lists(st.one_of(*[st.tuples(st.just(k), v) for k, v in pairs]), max_size=max_size).map(
            lambda xs: [a for kv in xs for a in kv]
        )

    def cmd(head, *parts):
        return st.tuples(*parts, maybe_bogus).map(lambda t: [*head, *(a for part in t for a in part)])

    screen = cmd(
        ["screen"],
        st.one_of(st.lists(prompt, min_size=1, max_size=3), st.tuples(st.just("--input"), path).map(list)),
        opts([("--column", ODD_TEXT | st.just("prompt")), ("--policy", policy), ("--batch-size", NUMBERS)]),
        st.lists(st.sampled_from(["--jsonl", "--quiet"]), max_size=2),
    )
    spec_path = path | path.map(lambda p: p + ":prompt") | ODD_TEXT
    eval_ = cmd(
        ["eval"],
        st.tuples(st.just("--unsafe"), spec_path, st.just("--benign"), spec_path).map(list),
        opts([("--labels", ODD_TEXT | st.just("label")), ("--json", path), ("--limit", NUMBERS), ("--policy", policy)]),
    )
    validate = cmd(["policy", "validate"], st.lists(policy, min_size=1, max_size=4))
    show = cmd(
        ["policy", "show"],
        policy.map(lambda p: [p]),
        st.lists(st.sampled_from(["--as-written", "--resolved"]), max_size=1),
    )
    source = st.one_of(
        st.tuples(st.just("--pipeline"), path | st.sampled_from(["demo", "sd15x", ""])),
        st.tuples(st.just("--model"), path | ODD_TEXT),
    ).map(list)
    generate = cmd(
        ["generate"],
        st.lists(prompt, min_size=1, max_size=2),
        source,
        opts([("--policy", policy), ("--out", path), ("--steps", NUMBERS), ("--seed", NUMBERS)]),
    )
    calibrate = cmd(
        ["calibrate"],
        st.tuples(st.just("--model"), path | ODD_TEXT, st.just("--benign"), spec_path).map(list),
        opts([("--quantile", NUMBERS), ("--policy", policy), ("--limit", NUMBERS)]),
    )
    top = st.lists(st.sampled_from(["--version", "--help", "nosuch", "policy", "-x"]), max_size=2)
    return st.one_of(screen, eval_, validate, show, generate, calibrate, top)


class _Hang(Exception):
    pass


def run_cli(argv, hang_s=HANG_S):
    out, err = io.StringIO(), io.StringIO()

    def alarm(signum, frame):
        raise _Hang(f"guard {argv!r} ran over {hang_s} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(hang_s)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return code, out.getvalue(), err.getvalue()


def check_run(argv, hang_s=HANG_S):
    code, out, err = run_cli(argv, hang_s)
    shown = f"guard {argv!r}\nexit {code}\nstderr: {err[-2000:]!r}"
    assert code in (0, 1, 2), shown
    assert "Traceback" not in err and "Traceback" not in out, shown
    assert "internal error" not in err, shown
    if code != 0 and not err.lstrip().startswith("Usage:"):  # `guard policy` alone prints its help
        first = err.strip().splitlines()[0] if err.strip() else ""
        assert first.startswith("error:"), shown
    return code, out, err


@pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="needs SIGALRM to catch hangs")
def test_cli_fuzz(files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `guard generate` without --out writes ./guard-out here
    monkeypatch.setenv("GUARD_DEBUG", "")

    @FUZZ
    @given(argv_strategy(files))
    def run(argv):
        check_run(argv)

    run()


@pytest.mark.parametrize(
    "argv",
    [
        ["screen", "-i", "{dir}"],
        ["screen", "-i", "{binary.txt}"],
        ["screen", "-i", "{latin1.txt}"],
        ["screen", "-i", "{empty.txt}"],
        ["screen", "-i", "{ragged.csv}"],
        ["screen", "-i", "{header-only.csv}", "-c", "prompt"],
        ["screen", "-i", "{badquote.csv}"],
        ["screen", "-i", "{fifo}"],
        ["screen", "-i", "{devnull}"],
        ["screen", "x", "-p", "{dir}"],
        ["screen", "x", "-p", "{binary.txt}"],
        ["screen", "x", "-p", "{fifo}"],
        ["screen", "x", "-p", "{policy-notyaml.yaml}"],
        ["screen", "x", "-p", "{policy-list.yaml}"],
        ["screen", "x", "-p", "a" * 5000],
        ["screen", "\udcff"],
        ["screen", "x", "--column", "prompt"],
        ["policy", "show", "{dir}"],
        ["policy", "show", "{binary.txt}", "--as-written"],
        ["generate", "x", "--pipeline", "{spec-bad.yaml}"],
        ["generate", "x", "--pipeline", "{spec-bin.yaml}"],
        ["generate", "x", "--pipeline", "{spec-badpolicy.yaml}"],
        ["generate", "x", "--pipeline", "{dir}"],
        ["generate", "x", "--pipeline", "{fifo}"],
        ["policy", "validate", "{fifo}", "{dir}", "{devnull}"],
        ["generate", "x", "--model", "{binary.txt}"],
        ["generate", "x", "--model", "{dir}"],
        ["generate", "x", "--model", ""],
        ["generate", "x", "--pipeline", "demo", "--out", "{afile}"],
        ["generate", "x", "--pipeline", "demo", "--seed", "-1"],
        ["generate", "x", "--pipeline", "demo", "--steps", "100000"],
        ["eval", "--unsafe", "{ok.txt}", "--benign", "{ok.txt}", "--labels", "label"],
        ["eval", "--unsafe", "{labels.csv}", "--benign", "{ok.txt}", "--labels", "nolabel"],
        ["eval", "--unsafe", "{ok.txt}", "--benign", "{ok.txt}", "--json", "{dir}"],
        ["eval", "--unsafe", "{missing.csv}:prompt", "--benign", "{ok.txt}"],
    ],
)
def test_cli_known_bad_inputs_fail_cleanly(files, argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if any("{fifo}" in a for a in argv) and "fifo" not in files:
        pytest.skip("no FIFOs here")
    filled = []
    for a in argv:
        for k, v in files.items():
            a = a.replace("{" + k + "}", v)
        filled.append(a)
    code, _, err = check_run(filled)
    assert code in (1, 2), f"guard {filled!r} exited 0; stderr {err!r}"
    assert err.strip(), filled


@pytest.mark.parametrize("name", LOADER_GAPS)
def test_cli_refuses_pathological_policies_cleanly(files, name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = check_run(["screen", "x", "-p", files[name]], hang_s=10)
    assert code == 2 and err.startswith("error: "), err


def test_cli_huge_prompt_and_huge_csv_cell_are_screened(files, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, out, err = check_run(["screen", "-i", files["huge-cell.csv"], "--jsonl", "-p", files["policy.yaml"]])
    assert code == 0, err
    assert out.count("\n") == 1  # one 144,000-character prompt, one result
    code, out, err = check_run(["screen", "a " * 30000, "--jsonl", "-p", files["policy.yaml"]])
    assert code == 0, err


def test_sys_argv_default(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["guard", "--version"])
    assert main() == 0 and capsys.readouterr().out.startswith("guard ")
