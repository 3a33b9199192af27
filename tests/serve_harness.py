"""A real ``guard serve`` process on 127.0.0.1 for the serve and playground tests.

``shared_server()`` starts one server per test session (a subprocess running uvicorn on a free
loopback port, with its own config, policy files and audit log under a temporary directory) and
stops it at the end of the session; ``start_server()`` starts a private one (e.g. to test shutdown).
"""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from conftest import TEST_POLICY

KEYS = {
    "acme": "gk_test_acme_1f0d6c3a9b",  # every deployment
    "limited": "gk_test_limited_77aa01",  # the screen deployment only
    "beta": "gk_test_beta_c0ffee42",  # its own policy on `screen`
}
ADMIN_KEY = "gk_test_admin_5e5e5e5e"
ROOT = Path(__file__).resolve().parents[1]


def _sha(key: str) -> str:
    from guard.serve.config import hash_key

    return hash_key(key)


def policy_v(variant: str) -> dict:
    """The test policy, or variants of it: ``cats`` also blocks cats (a visibly different verdict)."""
    p = copy.deepcopy(TEST_POLICY)
    if variant == "cats":
        p["name"] = "test-cats"
        p["concepts"].append(
            {
                "id": "animals.cats",
                "category": "animals",
                "action": "block",
                "threshold": 0.6,
                "phrases": ["a photo of a cat", "a cute kitten", "a cat sitting on a sofa"],
            }
        )
    return p


def write_policy(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_config(d: Path) -> dict:
    for name in ("policy", "reloadable", "gen_reload"):
        write_policy(d / f"{name}.yaml", policy_v("base"))
    write_policy(d / "beta.yaml", policy_v("cats"))
    demo = {"pipeline": "demo", "policy": "policy.yaml"}
    return {
        "version": 1,
        "audit": {"path": "audit.jsonl"},
        "admin_keys": [_sha(ADMIN_KEY)],
        "limits": {
            "max_body_bytes": 65536,
            "max_prompt_chars": 500,
            "max_prompts": 16,
            "max_n": 3,
            "max_side": 128,
            "max_pixels": 128 * 128,
            "max_input_pixels": 256 * 256,
        },
        "reload": {"poll_seconds": 0.3},
        "deployments": [
            {"name": "screen", "screen_only": True, "policy": "policy.yaml"},
            {"name": "reloadable", "screen_only": True, "policy": "reloadable.yaml"},
            {"name": "demo", **demo, "pool": 2, "queue": 8},
            {"name": "blank", **demo, "on_block": "blank"},
            {"name": "slow", **demo, "pool": 1, "queue": 1, "defaults": {"num_inference_steps": 60}},
            {
                "name": "timeout",
                **demo,
                "pool": 1,
                "queue": 4,
                "timeout_s": 0.3,
                "defaults": {"num_inference_steps": 30},
            },
            {"name": "edit", **demo, "kind": "img2img"},
            {"name": "inpaint", **demo, "kind": "inpaint"},
            {"name": "gen-reload", "pipeline": "demo", "policy": "gen_reload.yaml", "pool": 1, "queue": 16},
        ],
        "tenants": [
            {"name": "acme", "keys": [_sha(KEYS["acme"])], "deployments": ["*"]},
            {"name": "limited", "keys": [_sha(KEYS["limited"])], "deployments": ["screen"]},
            {
                "name": "beta",
                "keys": [_sha(KEYS["beta"])],
                "deployments": ["screen", "demo"],
                "policies": {"screen": "beta.yaml"},
            },
        ],
    }


class Server:
    def __init__(self, workdir: Path, config: dict, ready_timeout_s: float = 180.0):
        self.dir = workdir
        self.config_path = workdir / "serve.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        env = dict(
            os.environ,
            OMP_NUM_THREADS="1",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            PYTHONUNBUFFERED="1",
        )
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "guard.serve",
                "--config",
                str(self.config_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "info",
            ],
            cwd=str(ROOT),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready(ready_timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"guard serve exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                r = httpx.get(self.url + "/readyz", timeout=2)
                last = r.text
                if r.status_code == 200:
                    return
            except httpx.HTTPError as e:
                last = repr(e)
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"guard serve not ready within {timeout_s} s (last /readyz: {last}):\n{self.log()[-4000:]}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    @property
    def audit_path(self) -> Path:
        return self.dir / "audit.jsonl"

    def audit_lines(self) -> list[str]:
        p = self.audit_path
        return p.read_text(encoding="utf-8").splitlines() if p.is_file() else []

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout_s: float = 60.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


_SHARED: dict[str, Any] = {}


def shared_server(request: Any) -> Server:
    """One server for the whole session (started by whichever test module needs it first)."""
    if "server" not in _SHARED:
        d = Path(tempfile.mkdtemp(prefix="guard-serve-test-"))
        srv = Server(d, test_config(d))
        _SHARED["server"] = srv
        request.session.addfinalizer(srv.stop)
    return _SHARED["server"]


def auth(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}
