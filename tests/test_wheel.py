"""The wheel as users get it: built from this checkout, installed into a fresh venv, run from elsewhere.

The fresh venv has no pip and no system site-packages; a ``.pth`` line makes the test venv's site-packages
(the dependencies: torch, diffusers, ...) importable after its own, and the wheel goes in with
``pip --python VENV install --no-deps --no-index``, so nothing is downloaded. ``.pth`` lines are not
processed as site directories, so the test venv's editable-install hook never runs there: ``guard`` can only
come from the wheel, which the test checks, and every command runs with its cwd outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# not marked slow: the four tests take about 25 s together on a loaded 2-core machine (a 16 s pipeline run)


def _run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("wheel")
    # build from a clean copy: a stale build/lib in the checkout would put deleted modules into the wheel
    src = work / "src"
    shutil.copytree(
        ROOT,
        src,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache", "guard-out"
        ),
    )
    dist = work / "dist"
    pip_wheel = ["-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(dist)]
    _run([sys.executable, *pip_wheel, str(src)], cwd=work)
    (wheel,) = dist.glob("diffusers_guard-*.whl")
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=work)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = Path(
        _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=work).stdout.strip()
    )
    deps = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    (purelib / "_test_deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    _run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        cwd=work,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    cwd = work / "elsewhere"
    cwd.mkdir()
    exe = venv / ("Scripts/guard.exe" if os.name == "nt" else "bin/guard")
    return {"wheel": wheel, "py": py, "guard": exe, "purelib": purelib, "env": env, "cwd": cwd}


def test_wheel_ships_code_and_data(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    assert {"guard/cli/__init__.py", "guard/cli/calibrate.py", "guard/paths.py", "guard/policy/loader.py"} <= names
    for policy in ("default", "strict", "art-styles"):
        assert f"guard/_policies/{policy}.yaml" in names
    assert {"guard/_pipelines/demo.yaml", "guard/_pipelines/sd15.yaml"} <= names
    banks = {n for n in names if n.startswith("guard/_policies/banks/")}
    assert banks == {f"guard/_policies/banks/{p.name}" for p in (ROOT / "policies" / "banks").glob("*.yaml")}
    for folder in ("guard/screen/data", "guard/screen/models", "guard/serve/static"):  # data other parts add
        here = (
            {
                p.relative_to(ROOT).as_posix()
                for p in (ROOT / folder).rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
            }
            if (ROOT / folder).is_dir()
            else set()
        )
        assert here <= names, f"not in the wheel: {sorted(here - names)[:5]}"
    entry = (
        zipfile.ZipFile(installed["wheel"])
        .read(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))
        .decode()
    )
    assert "guard = guard.cli:main" in entry


def test_installed_package_comes_from_the_wheel(installed):
    code = (
        "import guard, guard.paths, guard.policy.loader as l; print(guard.__file__); "
        "print(guard.paths.builtin_policy_dir()); print(l.builtin_policy_dir())"
    )
    out = _run([str(installed["py"]), "-c", code], cwd=installed["cwd"], env=installed["env"]).stdout.split()
    purelib = installed["purelib"].resolve()
    for line in out:
        assert Path(line).resolve().is_relative_to(purelib), (line, purelib)
    assert not any(Path(line).resolve().is_relative_to(ROOT) for line in out)


def test_installed_cli_version_and_screen(installed):
    g, env, cwd = str(installed["guard"]), installed["env"], installed["cwd"]
    import guard

    assert _run([g, "--version"], cwd=cwd, env=env).stdout.strip() == f"guard {guard.__version__}"
    r = _run(
        [g, "screen", "a photo of a naked woman", "a bowl of ramen on a wooden table", "--jsonl"], cwd=cwd, env=env
    )
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert [row["decision"] for row in rows][:1] == ["block"] and len(rows) == 2
    r = _run([g, "policy", "validate", "default", "strict", "art-styles"], cwd=cwd, env=env)
    assert r.stdout.count("OK ") == 3


def test_installed_cli_generates_with_the_builtin_demo_spec(installed):
    g, env, cwd = str(installed["guard"]), installed["env"], installed["cwd"]
    out = cwd / "out"
    _run(
        [g, "generate", "a red kite over the sea", "a photo of a naked woman", "--pipeline", "demo", "--out", str(out)],
        cwd=cwd,
        env=env,
        timeout=600,
    )
    report = json.loads((out / "report.json").read_text())
    assert [im["decision"] for im in report["images"]] == ["allowed", "blocked"]
    assert report["policy"]["name"] == "default"
    assert sorted(p.name for p in out.glob("*.png")) == ["image-0-allowed.png", "image-1-blocked.png"]
    spec = _run(
        [str(installed["py"]), "-c", "from guard.spec import load_spec; print(load_spec('sd15').policy_ref())"],
        cwd=cwd,
        env=env,
    )
    assert spec.stdout.strip() == "default"
