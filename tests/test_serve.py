"""``guard serve`` end to end: a real uvicorn process on 127.0.0.1, driven with httpx.

One server serves the whole module (see serve_harness.py for its config: screen-only, text2img,
img2img, inpaint, slow, timeout and blank deployments on the demo weights, three tenants, an admin
key, small limits, an audit log). Tests that change a policy use their own deployment's file.
"""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import re
import signal
import time
from collections import Counter

import httpx
import numpy as np
import PIL.Image
import pytest

from serve_harness import ADMIN_KEY, KEYS, auth, policy_v, shared_server, write_policy

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def srv(request):
    return shared_server(request)


@pytest.fixture(scope="module")
def client(srv):
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        yield c


def screen(client, prompts, deployment="screen", tenant="acme"):
    return client.post("/v1/screen", json={"deployment": deployment, "prompts": prompts}, headers=auth(tenant))


def gen(client, prompt, model="demo", tenant="acme", **kw):
    return client.post("/v1/images/generations", json={"model": model, "prompt": prompt, **kw}, headers=auth(tenant))


def png(b64: str) -> PIL.Image.Image:
    return PIL.Image.open(io.BytesIO(base64.b64decode(b64)))


def png_bytes(size=(64, 64), color=(90, 140, 200), mode="RGB") -> bytes:
    buf = io.BytesIO()
    PIL.Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def metric_samples(text: str, name: str) -> dict[tuple, float]:
    """{(sorted label items): value} for one metric of the Prometheus text format."""
    out = {}
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        m = re.match(r"^[a-z_]+\{(.*)\} (\S+)$", line)
        labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(1))))
        out[labels] = float(m.group(2))
    return out


def wait_idle(client, deployment, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        d = {x["name"]: x for x in client.get("/v1/deployments", headers=auth("acme")).json()["data"]}[deployment]
        if d["running"] == 0 and d["queue_depth"] == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"{deployment} still busy after {timeout_s} s")


# ---------------------------------------------------------------------- health, docs, info


def test_health_ready_docs_and_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["ready"] is True
    assert all(d["ready"] for d in r.json()["deployments"].values())
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for p in (
        "/v1/screen",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/deployments",
        "/v1/policies/{deployment}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/admin/reload",
    ):
        assert p in paths, p


def test_deployments_are_listed_per_tenant(client):
    all_ = {d["name"]: d for d in client.get("/v1/deployments", headers=auth("acme")).json()["data"]}
    assert {"screen", "demo", "edit", "inpaint", "slow", "blank"} <= set(all_)
    assert all_["screen"]["kind"] == "screen" and all_["demo"]["kind"] == "text2img"
    assert all_["edit"]["kind"] == "img2img" and all_["inpaint"]["kind"] == "inpaint"
    assert all_["demo"]["pool"] == 2 and all_["demo"]["default_size"] == "64x64"
    limited = client.get("/v1/deployments", headers=auth("limited")).json()["data"]
    assert [d["name"] for d in limited] == ["screen"]


def test_policy_endpoint_names_the_sha_requests_run_under(client):
    info = client.get("/v1/policies/screen", headers=auth("acme")).json()
    assert info["name"] == "test" and len(info["sha256"]) == 64 and info["source"].endswith("policy.yaml")
    assert info["loaded_at"] and info["error"] is None and info["concepts"] == 3
    r = screen(client, ["a cat"])
    assert r.json()["policy"]["sha256"] == info["sha256"] == r.headers["X-Guard-Policy-Sha256"]
    beta = client.get("/v1/policies/screen", headers=auth("beta")).json()
    assert beta["name"] == "test-cats" and beta["tenant"] == "beta" and beta["sha256"] != info["sha256"]
    assert client.get("/v1/policies/nope", headers=auth("acme")).status_code == 404
    assert client.get("/v1/policies/demo", headers=auth("limited")).status_code == 403


# ---------------------------------------------------------------------- auth


def test_auth_failures(client, srv):
    body = {"deployment": "screen", "prompts": ["a cat"]}
    r = client.post("/v1/screen", json=body)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert r.json()["error"]["type"] == "authentication_error"
    r = client.post("/v1/screen", json=body, headers={"Authorization": "Bearer not-a-key"})
    assert r.status_code == 401 and "not-a-key" not in r.text
    assert client.post("/v1/screen", json=body, headers={"Authorization": "Basic abc"}).status_code == 401
    r = gen(client, "a cat", tenant="limited")
    assert r.status_code == 403 and r.json()["error"]["param"] == "model"
    assert screen(client, ["a cat"], deployment="demo", tenant="limited").status_code == 403
    # a tenant key is no admin key; no key at all is 401
    assert client.post("/admin/reload", headers=auth("acme")).status_code == 403
    assert client.post("/admin/reload").status_code == 401
    assert client.get("/v1/deployments").status_code == 401


def test_keys_never_reach_the_log_or_the_audit_log(client, srv):
    for t in KEYS:
        screen(client, ["a cat"], tenant=t)
    gen(client, "a lighthouse at dusk", tenant="acme")
    client.post(
        "/v1/screen",
        json={"deployment": "screen", "prompts": ["x"]},
        headers={"Authorization": "Bearer gk_wrong_key_leak_check"},
    )
    client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    text = srv.log() + "\n".join(srv.audit_lines()) + client.get("/metrics").text
    for k in [*KEYS.values(), ADMIN_KEY, "gk_wrong_key_leak_check"]:
        assert k not in text


# ---------------------------------------------------------------------- screening


def test_screen_verdicts_with_reasons(client):
    r = screen(client, ["a photo of a naked woman", "a watercolor of a lighthouse", "a mutilated corpse"])
    assert r.status_code == 200
    res = r.json()["results"]
    assert [x["decision"] for x in res] == ["block", "allow", "block"]
    assert res[0]["category"] == "sexual" and res[0]["concept"] == "sexual.nudity"
    assert res[0]["score"] >= res[0]["threshold"] == 0.6 and res[0]["reasons"]
    assert res[2]["concept"] == "violence.gore"
    assert res[1]["reasons"] and res[1]["score"] < 0.6
    assert [x["index"] for x in res] == [0, 1, 2]


def test_tenant_policy_per_deployment(client):
    prompt = ["a cute kitten"]
    assert screen(client, prompt, tenant="acme").json()["results"][0]["decision"] == "allow"
    b = screen(client, prompt, tenant="beta").json()
    assert b["results"][0]["decision"] == "block" and b["results"][0]["concept"] == "animals.cats"
    assert b["policy"]["name"] == "test-cats"


def test_concurrent_screens_share_an_encoder_pass_and_match_solo_results(client, srv):
    prompts = [f"a photo of a red bicycle number {i}" for i in range(12)] + ["a naked woman on a beach"] * 4
    solo = {p: screen(client, [p]).json()["results"][0] for p in set(prompts)}
    with httpx.Client(base_url=srv.url, timeout=60, limits=httpx.Limits(max_connections=16)) as c2:
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            outs = list(ex.map(lambda p: screen(c2, [p]), prompts))
    assert all(o.status_code == 200 for o in outs)
    assert max(o.json()["batch_prompts"] for o in outs) > 1  # some requests rode together
    for p, o in zip(prompts, outs, strict=True):
        got = o.json()["results"][0]
        assert got["decision"] == solo[p]["decision"] and got["concept"] == solo[p]["concept"]
        # another batch layout changes float32 kernel rounding by ~1e-6; scores are rounded to 1e-4
        assert abs(got["score"] - solo[p]["score"]) <= 2e-4


# ---------------------------------------------------------------------- limits


def test_body_size_limit_is_413(client):
    big = {"deployment": "screen", "prompts": ["a" * 400] * 200}  # ~80 kB > 64 kB
    r = client.post("/v1/screen", json=big, headers=auth("acme"))
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunks():  # no Content-Length: the limit still holds
        for _ in range(40):
            yield b"x" * 4096

    r = client.post("/v1/screen", content=chunks(), headers={**auth("acme"), "Content-Type": "application/json"})
    assert r.status_code == 413


@pytest.mark.parametrize(
    "body,param",
    [
        ({"deployment": "screen", "prompts": ["a" * 501]}, "prompts[0]"),
        ({"deployment": "screen", "prompts": ["ok", "b" * 501]}, "prompts[1]"),
        ({"deployment": "screen", "prompts": ["x"] * 17}, "prompts"),
        ({"deployment": "screen", "prompts": []}, "prompts"),
        ({"deployment": "screen", "prompts": [3]}, "prompts.0"),
        ({"deployment": "screen", "prompts": ["x"], "extra": 1}, "extra"),
        (b'{"deployment": "screen", "prompts": ["a \\ud800 b"]}', "prompts[0]"),  # a lone surrogate, JSON-escaped
        ({"deployment": "screen", "prompts": ["   "]}, "prompts[0]"),
    ],
)
def test_screen_limits_are_422_naming_the_field(client, body, param):
    if isinstance(body, bytes):
        r = client.post("/v1/screen", content=body, headers={**auth("acme"), "Content-Type": "application/json"})
    else:
        r = client.post("/v1/screen", json=body, headers=auth("acme"))
    assert r.status_code == 422, r.text[:300]
    assert r.json()["error"]["param"] == param


@pytest.mark.parametrize(
    "extra,param",
    [
        ({"n": 4}, "n"),
        ({"n": 0}, "n"),
        ({"size": "1024x1024"}, "size"),
        ({"size": "120x144"}, "size"),
        ({"size": "big"}, "size"),
        ({"size": "128x136"}, "size"),
        ({"prompt": "p" * 501}, "prompt"),
        ({"response_format": "url"}, "response_format"),
        ({"model": "edit"}, "model"),
        ({"n": True}, "n"),
        ({"n": "2"}, "n"),
    ],
)
def test_generation_limits_are_422_naming_the_field(client, extra, param):
    body = {"model": "demo", "prompt": "a lighthouse", **extra}
    r = client.post("/v1/images/generations", json=body, headers=auth("acme"))
    assert r.status_code == 422, r.text[:300]
    assert r.json()["error"]["param"] == param


def test_edit_limits_are_422_naming_the_field(client):
    def edit(model="edit", image=None, mask=None, **form):
        files = {"image": ("in.png", image if image is not None else png_bytes(), "image/png")}
        if mask is not None:
            files["mask"] = ("mask.png", mask, "image/png")
        return client.post(
            "/v1/images/edits", data={"model": model, "prompt": "a lake", **form}, files=files, headers=auth("acme")
        )

    cases = [
        (edit(image=png_bytes((300, 300))), "image"),  # 90,000 pixels > max_input_pixels
        (edit(image=b"not an image at all"), "image"),
        (edit(image=b""), "image"),
        (edit(model="inpaint"), "mask"),  # inpaint needs a mask
        (edit(mask=png_bytes(mode="L", color=255)), "mask"),  # img2img takes none
        (edit(model="inpaint", mask=png_bytes((32, 32), mode="L", color=255)), "mask"),  # size mismatch
        (edit(n="9"), "n"),
        (edit(size="4096x8"), "size"),
        (edit(model="demo"), "model"),
    ]
    for r, param in cases:
        assert r.status_code == 422, (param, r.text[:300])
        assert r.json()["error"]["param"] == param, r.text[:300]


# ---------------------------------------------------------------------- images


def test_generation_returns_openai_shape_with_guard_fields(client):
    sha = client.get("/v1/policies/demo", headers=auth("acme")).json()["sha256"]
    r = gen(client, "a lighthouse on a cliff at dusk", n=2, seed=3)
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    assert isinstance(body["created"], int) and len(body["data"]) == 2
    for item in body["data"]:
        img = png(item["b64_json"])
        assert img.size == (64, 64)
        g = item["guard"]
        assert g["decision"] == "allowed" and g["stage"] is None and g["policy_sha256"] == sha
        assert g["request_id"] == body["guard"]["request_id"]
    assert body["guard"]["policy"]["sha256"] == sha and "generate" in body["guard"]["timings_ms"]
    # the seed makes it reproducible
    again = gen(client, "a lighthouse on a cliff at dusk", n=2, seed=3).json()
    assert [d["b64_json"] for d in again["data"]] == [d["b64_json"] for d in body["data"]]


def test_blocked_prompt_is_400_content_policy_violation(client):
    r = gen(client, "a photo of a naked woman", n=2)
    assert r.status_code == 400
    e = r.json()["error"]
    assert e["code"] == "content_policy_violation" and e["param"] == "prompt"
    assert len(e["guard"]) == 2 and all(g["decision"] == "blocked" and g["stage"] == "screen" for g in e["guard"])
    assert e["guard"][0]["concept"] == "sexual.nudity" and e["policy_sha256"] and e["request_id"]


def test_on_block_blank_deployment_returns_black_images(client):
    r = gen(client, "a photo of a naked woman", model="blank")
    assert r.status_code == 200
    item = r.json()["data"][0]
    assert item["guard"]["decision"] == "blocked" and item["guard"]["category"] == "sexual"
    assert np.asarray(png(item["b64_json"])).max() == 0


def test_img2img_and_inpaint_edits_check_the_input_image(client):
    files = {"image": ("in.png", png_bytes((72, 64)), "image/png")}
    r = client.post(
        "/v1/images/edits",
        data={"model": "edit", "prompt": "a lake at dawn", "seed": "1"},
        files=files,
        headers=auth("acme"),
    )
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    assert png(body["data"][0]["b64_json"]).size == (72, 64)
    assert "input_check" in body["guard"]["timings_ms"]  # the input image went through the classifiers
    mask = io.BytesIO()
    m = PIL.Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    m.paste((0, 0, 0, 0), (16, 16, 48, 48))  # OpenAI convention: transparent = repaint
    m.save(mask, format="PNG")
    files = {"image": ("in.png", png_bytes(), "image/png"), "mask": ("m.png", mask.getvalue(), "image/png")}
    r = client.post(
        "/v1/images/edits", data={"model": "inpaint", "prompt": "a boat", "n": "2"}, files=files, headers=auth("acme")
    )
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["data"]) == 2 and "input_check" in r.json()["guard"]["timings_ms"]
    r = client.post(
        "/v1/images/edits",
        data={"model": "edit", "prompt": "a photo of a naked woman"},
        files={"image": ("in.png", png_bytes(), "image/png")},
        headers=auth("acme"),
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "content_policy_violation"


# ---------------------------------------------------------------------- backpressure


def test_flooded_queue_answers_429_with_retry_after(client, srv):
    # `slow`: one worker, one waiting place -> of 6 simultaneous requests at most 2 are admitted
    with httpx.Client(base_url=srv.url, timeout=120, limits=httpx.Limits(max_connections=8)) as c2:
        with concurrent.futures.ThreadPoolExecutor(6) as ex:
            outs = list(ex.map(lambda i: gen(c2, f"a lighthouse {i}", model="slow"), range(6)))
    codes = Counter(o.status_code for o in outs)
    assert set(codes) <= {200, 429}, codes
    assert codes[429] >= 3 and 1 <= codes[200] <= 3, codes
    for o in outs:
        if o.status_code == 429:
            assert int(o.headers["Retry-After"]) >= 1 and o.json()["error"]["code"] == "queue_full"
    m = metric_samples(client.get("/metrics").text, "guard_serve_rejected_total")
    assert m[(("deployment", "slow"), ("reason", "queue_full"))] >= codes[429]


def test_request_over_the_deadline_is_504(client):
    r = gen(client, "a lighthouse", model="timeout")
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
    wait_idle(client, "timeout")


# ---------------------------------------------------------------------- reload


def _sha_of(client, deployment):
    return client.get(f"/v1/policies/{deployment}", headers=auth("acme")).json()


def _wait_for(pred, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_reload_valid_and_invalid_under_concurrent_requests(client, srv):
    path = srv.dir / "reloadable.yaml"
    sha_a = _sha_of(client, "reloadable")["sha256"]
    seen: list[tuple[int, str, str]] = []
    stop = {"v": False}

    def hammer(c):
        n = 0
        while not stop["v"] and n < 400:  # bounded
            r = screen(c, ["a photo of a cat", "a naked woman"], deployment="reloadable")
            body = r.json() if r.status_code == 200 else {}
            res = body.get("results", [{}, {}])
            seen.append((r.status_code, body.get("policy", {}).get("sha256"), res[0].get("decision")))
            n += 1

    with httpx.Client(base_url=srv.url, timeout=60, limits=httpx.Limits(max_connections=6)) as c2:
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            futs = [ex.submit(hammer, c2) for _ in range(4)]
            time.sleep(0.3)
            # 1. a valid change on disk is picked up by the mtime poll
            write_policy(path, policy_v("cats"))
            info_b = _wait_for(lambda: (i := _sha_of(client, "reloadable"))["sha256"] != sha_a and i)
            sha_b = info_b["sha256"]
            assert info_b["name"] == "test-cats" and info_b["error"] is None
            time.sleep(0.3)
            # 2. an invalid file keeps the old policy; the error names file:line everywhere
            path.write_text("version: 1\nname: broken\nconcepts:\n  - id: x\n    thresold: 0.5\n", encoding="utf-8")
            info = _wait_for(lambda: (i := _sha_of(client, "reloadable"))["error"] and i)
            assert info["sha256"] == sha_b
            assert re.search(r"reloadable\.yaml:\d+:\d+", info["error"]) and "thresold" in info["error"]
            rz = client.get("/readyz")
            assert rz.status_code == 200
            assert "reloadable.yaml" in rz.json()["deployments"]["reloadable"]["policy_errors"][0]
            assert client.get("/readyz?strict=true").status_code == 503
            r = client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
            assert r.status_code == 422 and not r.json()["ok"]
            bad = next(x for x in r.json()["results"] if x["deployment"] == "reloadable")
            assert bad["result"] == "failed" and "reloadable.yaml:" in bad["error"] and bad["sha256"] == sha_b
            # 3. SIGHUP with the file fixed back to the first policy
            write_policy(path, policy_v("base"))
            srv.signal(signal.SIGHUP)
            _wait_for(lambda: _sha_of(client, "reloadable")["sha256"] == sha_a)
            time.sleep(0.3)
            stop["v"] = True
            for f in futs:
                f.result()
    assert "refused" in srv.log() and "reloadable.yaml:" in srv.log()
    assert client.get("/readyz?strict=true").status_code == 200
    codes = Counter(s for s, _, _ in seen)
    assert codes == {200: len(seen)}, codes  # no request failed
    shas = Counter(sha for _, sha, _ in seen)
    assert set(shas) <= {sha_a, sha_b} and shas[sha_a] and shas[sha_b]
    # the verdict always agrees with the policy the response names: never a half-loaded mix
    for _, sha, decision in seen:
        assert decision == ("block" if sha == sha_b else "allow")
    m = client.get("/metrics").text
    assert metric_samples(m, "guard_serve_policy_reload_failures_total")[(("deployment", "reloadable"),)] >= 2
    assert metric_samples(m, "guard_serve_policy_error")[(("deployment", "reloadable"),)] == 0
    ok = metric_samples(m, "guard_serve_policy_reloads_total")
    assert ok[(("deployment", "reloadable"), ("result", "ok"))] >= 2


def test_generation_during_reloads_loses_nothing(client, srv):
    path = srv.dir / "gen_reload.yaml"
    before = len(srv.audit_lines())
    shas = set()
    with httpx.Client(base_url=srv.url, timeout=120, limits=httpx.Limits(max_connections=6)) as c2:
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            futs = [ex.submit(gen, c2, f"a boat on a lake {i}", "gen-reload") for i in range(8)]
            for variant in ("cats", "base", "cats"):
                write_policy(path, policy_v(variant))
                r = client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
                assert r.status_code == 200 and r.json()["ok"]
                shas.add(next(x for x in r.json()["results"] if x["deployment"] == "gen-reload")["sha256"])
            outs = [f.result() for f in futs]
    assert [o.status_code for o in outs] == [200] * 8
    used = {o.json()["guard"]["policy"]["sha256"] for o in outs}
    assert used <= shas | {_sha_of(client, "gen-reload")["sha256"]}
    ids = Counter(json.loads(line)["request_id"] for line in srv.audit_lines()[before:])
    for o in outs:
        assert ids[o.json()["guard"]["request_id"]] == 1


# ---------------------------------------------------------------------- audit and metrics


def test_audit_lines_equal_images_answered_and_metrics_match_requests(client, srv):
    wait_idle(client, "timeout")
    m0 = client.get("/metrics").text
    before = len(srv.audit_lines())
    made = Counter()
    image_slots = 0
    ids = []
    for prompt, n, model in [
        ("a lighthouse", 1, "demo"),
        ("a red bicycle", 3, "demo"),
        ("a photo of a naked woman", 2, "demo"),
        ("a mutilated corpse", 1, "blank"),
    ]:
        r = gen(client, prompt, model=model, n=n)
        made[(model, "/v1/images/generations", str(r.status_code))] += 1
        body = r.json()
        ids.append((body["guard"]["request_id"] if r.status_code == 200 else body["error"]["request_id"], n))
        image_slots += n
    for prompts in (["a cat"], ["a naked woman", "a dog"]):
        r = screen(client, prompts)
        made[("screen", "/v1/screen", str(r.status_code))] += 1
    r = screen(client, ["x" * 600])
    made[("screen", "/v1/screen", str(r.status_code))] += 1
    r = client.post("/v1/screen", json={"deployment": "screen", "prompts": ["a"]})
    made[("", "/v1/screen", "401")] += 1
    lines = [json.loads(x) for x in srv.audit_lines()[before:]]
    assert len(lines) == image_slots == 7  # one line per image slot, blocked ones included
    per = Counter(x["request_id"] for x in lines)
    assert all(per[rid] == n for rid, n in ids)
    assert all(len(x["policy"]["sha256"]) == 64 for x in lines)
    m1 = client.get("/metrics").text
    a, b = (metric_samples(m, "guard_serve_requests_total") for m in (m0, m1))
    for (dep, ep, status), k in made.items():
        key = (("deployment", dep), ("endpoint", ep), ("status", status))
        assert b.get(key, 0) - a.get(key, 0) == k, key
    ia, ib = (metric_samples(m, "guard_serve_images_total") for m in (m0, m1))
    blocked = (("category", "sexual"), ("decision", "blocked"), ("deployment", "demo"), ("stage", "screen"))
    allowed = (("category", "none"), ("decision", "allowed"), ("deployment", "demo"), ("stage", "none"))
    assert ib[blocked] - ia.get(blocked, 0) == 2 and ib[allowed] - ia.get(allowed, 0) == 4
    pa, pb = (metric_samples(m, "guard_serve_prompts_total") for m in (m0, m1))
    key = (("category", "sexual"), ("decision", "block"), ("deployment", "screen"), ("stage", "screen"))
    assert pb[key] - pa.get(key, 0) == 1
    for name in (
        "guard_serve_stage_seconds_count",
        "guard_serve_queue_depth",
        "guard_serve_fail_closed_total",
        "guard_serve_policy_reloads_total",
    ):
        assert name.rsplit("_", 1)[0] in m1
