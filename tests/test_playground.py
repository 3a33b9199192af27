"""The playground page at ``/`` in a real headless Chromium (Debian package ``chromium``), driven over
the DevTools protocol: it loads the page, types a prompt, clicks Screen, and checks the rendered
verdict; then generates on the demo deployment. Screenshots are saved under ``tmp_path`` (and
``$GUARD_TEST_ARTIFACTS`` when set)."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from serve_harness import KEYS, shared_server

websocket = pytest.importorskip("websocket", reason="websocket-client is needed to drive Chromium")

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (Debian: apt-get install chromium)")


class Browser:
    """Chromium with --remote-debugging-port=0; one page target driven over its websocket."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="guard-chromium-")
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--window-size=1280,900",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        import urllib.request

        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self._ids = itertools.count(1)
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method: str, **params):
        i = next(self._ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expr: str):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr: str, timeout_s: float = 60):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.js(expr):
                return
            time.sleep(0.1)
        status = self.js("document.getElementById('status').textContent")
        raise AssertionError(f"timed out waiting for {expr}; page status: {status!r}")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        art = os.environ.get("GUARD_TEST_ARTIFACTS")
        if art:
            Path(art).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(art) / path.name)

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    b = Browser()
    yield b
    b.close()


def test_playground_screens_a_prompt_and_shows_the_verdict(browser, request, tmp_path):
    srv = shared_server(request)
    browser.call("Page.navigate", url=srv.url + "/")
    browser.wait("document.body && document.body.dataset.ready === '1'")
    # the server has tenants: without a key the page says so
    assert "401" in browser.js("document.getElementById('status').textContent")
    key = json.dumps(KEYS["acme"])
    browser.js(
        f"(() => {{ const k = document.getElementById('apikey'); k.value = {key}; "
        f"k.dispatchEvent(new Event('change')); }})()"
    )
    browser.wait("document.getElementById('deployment').options.length > 0")
    browser.js(
        "(() => { const s = document.getElementById('deployment'); s.value = 'screen';"
        "s.dispatchEvent(new Event('change')); })()"
    )
    prompts = json.dumps("a photo of a naked woman\na watercolor of a lighthouse\n<img src=x onerror=alert(1)>")
    browser.js(f"document.getElementById('prompts').value = {prompts}")
    browser.js("document.getElementById('screen-btn').click()")
    browser.wait("document.body.dataset.screened === '1'")
    rows = browser.js("""[...document.querySelectorAll('#results tbody tr')].map(tr => ({
        decision: tr.dataset.decision, badge: tr.querySelector('.badge').textContent,
        score: tr.querySelector('.score').textContent, threshold: tr.querySelector('.threshold').textContent,
        concept: tr.querySelector('.concept').textContent, category: tr.querySelector('.category').textContent,
        reasons: [...tr.querySelectorAll('.reasons li')].map(li => li.textContent),
        prompt: tr.querySelector('.prompt').textContent}))""")
    assert [r["decision"] for r in rows] == ["block", "allow", "allow"]
    assert rows[0]["badge"] == "block" and rows[0]["concept"] == "sexual.nudity" and rows[0]["category"] == "sexual"
    assert float(rows[0]["score"]) >= float(rows[0]["threshold"]) == 0.6
    assert rows[0]["reasons"] and "sexual.nudity" in " ".join(rows[0]["reasons"])
    assert rows[1]["concept"].startswith("nearest: ") and rows[1]["category"] == "–"
    # a hostile prompt is shown as text, never as markup
    assert rows[2]["prompt"] == "<img src=x onerror=alert(1)>"
    assert browser.js("document.querySelectorAll('#results img').length") == 0
    assert "sha256" in browser.js("document.getElementById('policy').textContent")
    browser.screenshot(tmp_path / "playground-screen.png")
    assert (tmp_path / "playground-screen.png").stat().st_size > 1000


def test_playground_generates_on_the_demo_deployment(browser, request, tmp_path):
    srv = shared_server(request)
    key = json.dumps(KEYS["acme"])
    browser.call("Page.navigate", url=srv.url + "/?deployment=demo&prompts=a%20lighthouse%20at%20dusk")
    browser.wait("document.body && document.body.dataset.ready === '1'")
    browser.js(
        f"(() => {{ const k = document.getElementById('apikey'); k.value = {key}; "
        f"k.dispatchEvent(new Event('change')); }})()"
    )
    browser.wait("!document.getElementById('generate-btn').disabled")
    browser.js("document.getElementById('generate-btn').click()")
    browser.wait("document.body.dataset.generated === '1'")
    shown = browser.js("[...document.querySelectorAll('#images img')].map(i => [i.naturalWidth, i.naturalHeight])")
    assert shown == [[64, 64]]
    assert browser.js("document.querySelector('#images figcaption').textContent").startswith("allowed")
    # the same page, on the screen-only deployment, cannot generate
    browser.js(
        "(() => { const s = document.getElementById('deployment'); s.value = 'screen';"
        "s.dispatchEvent(new Event('change')); })()"
    )
    assert browser.js("document.getElementById('generate-btn').disabled") is True
    browser.screenshot(tmp_path / "playground-generate.png")
