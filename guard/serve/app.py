"""The FastAPI app of ``guard serve``: screening, OpenAI-shaped images endpoints, deployments and
policies, health, Prometheus metrics, admin reload and the playground page.

Errors use the OpenAI error shape ``{"error": {"message", "type", "code", "param"}}``; a blocked
prompt is HTTP 400 with ``code: content_policy_violation`` (unless the deployment says
``on_block: blank``), a full queue 429 with ``Retry-After``, a request that waited too long 504, a
body over the limit 413, and a field over a limit 422 naming the field.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import re
import signal
import threading
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

from guard.errors import GuardBlocked, GuardInputError
from guard.serve.auth import AuthError, Tenant
from guard.serve.batcher import BatcherClosed, QueueFull
from guard.serve.config import ServeConfig, default_config
from guard.serve.models import (
    DeploymentInfo,
    DeploymentsResponse,
    ErrorResponse,
    ImageGenerationRequest,
    ImagesResponse,
    PolicyInfo,
    ReloadResponse,
    ScreenRequest,
    ScreenResponse,
)
from guard.serve.pool import PoolClosed, PoolFull
from guard.serve.state import ENDPOINTS, Deployment, ServerState

try:  # the serve extra installs it; the stdlib json is the fallback
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None

logger = logging.getLogger(__name__)

_SURROGATE = re.compile("[\ud800-\udfff]")
STATIC = Path(__file__).resolve().parent / "static"
_ERRORS = {k: {"model": ErrorResponse} for k in (400, 401, 403, 404, 413, 422, 429, 503, 504)}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> JSONResponse:
        body = {"message": self.message, "type": self.type, "code": self.code, "param": self.param, **self.extra}
        return JSONResponse({"error": body}, status_code=self.status, headers=self.headers)


# ---------------------------------------------------------------------- ASGI middleware


class BodyLimit:
    """Refuses a request body over ``limit`` bytes with 413, whether or not Content-Length is sent
    (the body is read into memory up to the limit and replayed to the app)."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        too_big = ApiError(
            413, f"request body over {self.limit} bytes (limits.max_body_bytes)", code="request_too_large"
        )
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    if int(v) > self.limit:
                        return await too_big.response()(scope, receive, send)
                except ValueError:
                    pass
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body = msg.get("body", b"")
            size += len(body)
            if size > self.limit:
                return await too_big.response()(scope, receive, send)
            chunks.append(body)
            if not msg.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def receive_again() -> dict:
            if replay:
                return replay.pop()
            return await receive()

        await self.app(scope, receive_again, send)


class RequestMetrics:
    """Counts every response by deployment, route and status, and times it."""

    def __init__(self, app: Any, state: ServerState):
        self.app, self.state = app, state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        labels: dict[str, str] = {}
        scope["guard.labels"] = labels
        status = {"code": 500}
        t0 = time.perf_counter()

        async def send_status(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            endpoint = scope.get("guard.endpoint") or getattr(route, "path", None) or "other"
            dep = labels.get("deployment", "")
            m = self.state.metrics
            m.requests.labels(dep, endpoint, str(status["code"])).inc()
            if dep:
                m.request_seconds.labels(dep, endpoint).observe(time.perf_counter() - t0)


class ScreenFastPath:
    """``POST /v1/screen`` answered straight from ASGI, past the framework's per-request layers
    (routing, dependency solving, the request object, the response class): on a 2-core machine
    those cost about as much as the batched screen of a short prompt. It runs inside
    :class:`BodyLimit` and :class:`RequestMetrics`, validates with the same pydantic model, runs the
    same :func:`screen_core` and formats errors with the same :class:`ApiError`. Whatever it does not
    take (a body the model refuses, another content type) goes on to the FastAPI route with the
    body replayed, so every 422 is the route's own. ``screen.fast_path: false`` turns it off."""

    def __init__(self, app: Any, core: Any):
        self.app, self.core = app, core

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/screen" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        chunks = []
        while True:  # BodyLimit has bounded (and buffered) it
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body", False):
                break
        raw = b"".join(chunks)
        authorization = ctype = None
        for k, v in scope["headers"]:
            if k == b"authorization":
                authorization = v.decode("latin-1")
            elif k == b"content-type":
                ctype = v.decode("latin-1")
        body = None
        if ctype is None or ctype.partition(";")[0].strip().lower() == "application/json":
            try:
                body = ScreenRequest.model_validate(json.loads(raw))
            except ValueError:  # bad JSON or refused by the model (pydantic's ValidationError is one)
                body = None
        if body is None:
            replay = [{"type": "http.request", "body": raw, "more_body": False}]

            async def receive_again() -> dict:
                return replay.pop() if replay else await receive()

            return await self.app(scope, receive_again, send)
        scope["guard.endpoint"] = "/v1/screen"
        try:
            payload, headers = await self.core(body, authorization, scope["guard.labels"])
        except ApiError as e:
            return await e.response()(scope, receive, send)
        data = _dumps(payload)
        raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        await send({"type": "http.response.body", "body": data})


# ---------------------------------------------------------------------- helpers


def _dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON as Starlette's JSONResponse writes it; orjson when installed (for these
    bodies of strings, numbers, lists and dicts it writes the same JSON, several times faster)."""
    if _orjson is not None:
        return _orjson.dumps(obj)
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def _tenant(state: ServerState, request: Request | None, authorization: str | None = None) -> Tenant:
    if request is not None:
        authorization = request.headers.get("authorization")
    try:
        return state.keys.tenant(authorization)
    except AuthError as e:
        state.metrics.auth_failures.labels(e.reason).inc()
        raise ApiError(
            e.status, str(e), type="authentication_error", code=e.reason, headers={"WWW-Authenticate": "Bearer"}
        ) from None


def _deployment(
    state: ServerState, labels: dict, tenant: Tenant, name: str, param: str, kinds: tuple[str, ...] | None = None
) -> Deployment:
    """The deployment ``name`` if this tenant may use it and it is ready; ``labels`` (the request's
    metric labels) get its name."""
    if not tenant.allows(name):
        state.metrics.auth_failures.labels("forbidden").inc()
        raise ApiError(
            403, f"this API key may not use deployment {name!r}", type="permission_error", code="forbidden", param=param
        )
    dep = state.deployments.get(name)
    if dep is None:
        import difflib

        close = difflib.get_close_matches(name, list(state.deployments), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; deployments: {', '.join(state.deployments)}"
        raise ApiError(404, f"no deployment {name!r}{hint}", code="deployment_not_found", param=param)
    labels["deployment"] = dep.name
    if kinds is not None and dep.kind not in kinds:
        raise ApiError(
            422,
            f"deployment {name!r} is a {dep.kind} deployment; this endpoint needs "
            f"{' or '.join(kinds)} (its endpoints: {', '.join(ENDPOINTS[dep.kind])})",
            code="wrong_deployment_kind",
            param=param,
        )
    if not dep.ready:
        why = dep.load_error or "still loading"
        state.metrics.rejected.labels(dep.name, "not_ready").inc()
        raise ApiError(
            503,
            f"deployment {name!r} is not ready: {why}",
            type="server_error",
            code="not_ready",
            headers={"Retry-After": "5"},
        )
    return dep


def _parse_size(
    size: str | None, default: tuple[int, int] | None, state: ServerState, param: str = "size"
) -> tuple[int, int]:
    lim = state.config.limits
    if size is None:
        if default is None:
            raise ApiError(422, "size is required", param=param, code="invalid_size")
        w, h = default
    else:
        parts = size.lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ApiError(
                422,
                f"size must be 'WIDTHxHEIGHT' (e.g. '512x512'), got {size[:40]!r}",
                param=param,
                code="invalid_size",
            )
        w, h = int(parts[0]), int(parts[1])
    if w % 8 or h % 8 or w < 8 or h < 8:
        raise ApiError(
            422, f"{param} {w}x{h}: width and height must be positive multiples of 8", param=param, code="invalid_size"
        )
    if max(w, h) > lim.max_side:
        raise ApiError(
            422, f"{param} {w}x{h}: a side is over limits.max_side={lim.max_side}", param=param, code="size_too_large"
        )
    if w * h > lim.max_pixels:
        raise ApiError(
            422,
            f"{param} {w}x{h}: {w * h} pixels, over limits.max_pixels={lim.max_pixels}",
            param=param,
            code="size_too_large",
        )
    return w, h


def _check_prompt(state: ServerState, prompt: str, param: str) -> None:
    lim = state.config.limits.max_prompt_chars
    if len(prompt) > lim:
        raise ApiError(
            422,
            f"{param} is {len(prompt)} characters; at most {lim} (limits.max_prompt_chars)",
            param=param,
            code="prompt_too_long",
        )
    if not prompt.strip():
        raise ApiError(422, f"{param} is empty", param=param, code="empty_prompt")
    bad = _SURROGATE.search(prompt)
    if bad:
        raise ApiError(
            422,
            f"{param} has a lone surrogate (U+{ord(bad.group()):04X}) at character {bad.start()}: not valid Unicode",
            param=param,
            code="invalid_unicode",
        )


def _check_n(state: ServerState, n: int) -> None:
    lim = state.config.limits.max_n
    if not 1 <= n <= lim:
        raise ApiError(422, f"n must be between 1 and {lim} (limits.max_n), got {n}", param="n", code="invalid_n")


def _time_out(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(asyncio.TimeoutError())


def _stage_of(error: str) -> str:
    for prefix, stage in (
        ("prompt screen", "screen"),
        ("generator-space", "generator_space"),
        ("output check", "output"),
        ("negative guidance", "guidance"),
        ("audit", "audit"),
    ):
        if error.startswith(prefix):
            return stage
    return "other"


def _image_guard(im: Any, report: Any) -> dict[str, Any]:
    s = im.screen
    stage = im.blocked_by
    if stage == "screen" and im.reasons and im.reasons[0].startswith("input `"):
        stage = "input"
    if im.decision == "flagged" and stage is None:
        stage = "output"
    reasons = list(im.reasons)
    if not reasons and s is not None:
        reasons = list(s.reasons[:3])
    hit = s is not None and s.decision != "allow"  # the nearest concept of an allowed prompt is no verdict
    return {
        "decision": im.decision,
        "stage": stage,
        "category": s.category if hit else None,
        "concept": s.concept if hit else None,
        "score": round(float(s.score), 4) if s is not None else None,
        "threshold": round(float(s.threshold), 4) if hit and s.threshold is not None else None,
        "reasons": reasons,
        "request_id": report.request_id,
        "policy_sha256": report.policy_sha256,
    }


def _png_b64(images: list[Any]) -> list[str]:
    out = []
    for img in images:
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out.append(base64.b64encode(buf.getvalue()).decode("ascii"))
    return out


# ---------------------------------------------------------------------- the app


def create_app(config: ServeConfig | None = None) -> FastAPI:
    """The app for ``config`` (default: :func:`guard.serve.config.default_config`). Deployments load in
    a background thread when the app starts; ``/readyz`` says when they are ready."""
    config = config or default_config()
    state = ServerState(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=state.load, name="guard-load", daemon=True).start()
        loop = asyncio.get_running_loop()

        def on_hup() -> None:
            logger.info("SIGHUP: reloading policies")
            threading.Thread(target=state.reload_all, args=("SIGHUP",), name="guard-reload", daemon=True).start()

        hup = False
        try:
            loop.add_signal_handler(signal.SIGHUP, on_hup)
            hup = True
        except (NotImplementedError, RuntimeError, ValueError, AttributeError):  # not the main thread / Windows
            logger.debug("SIGHUP reload not available here")
        try:
            yield
        finally:
            if hup:
                loop.remove_signal_handler(signal.SIGHUP)
            state.closing = True
            await asyncio.to_thread(state.close)

    app = FastAPI(
        title="guard serve",
        version="1",
        lifespan=lifespan,
        description="Guarded diffusers pipelines and prompt screening per deployment. Images endpoints "
        "follow the OpenAI images API (model = deployment). Authenticate with 'Authorization: Bearer "
        "<key>' when the server has tenants.",
    )
    app.state.guard = state

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return e.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        errs = e.errors()
        first = errs[0] if errs else {}
        loc = [str(x) for x in first.get("loc", ()) if x not in ("body", "form", "query")]
        param = ".".join(loc) or None
        msgs = "; ".join(
            f"{'.'.join(str(x) for x in er.get('loc', ()) if x != 'body')}: {er.get('msg')}" for er in errs[:5]
        )
        return ApiError(422, msgs or "invalid request", param=param, code="invalid_request").response()

    # ------------------------------------------------------------------ screening

    async def screen_core(body: ScreenRequest, authorization: str | None, labels: dict) -> tuple[dict, dict]:
        """The work of ``POST /v1/screen`` (the route and the fast path share it): the response body
        and headers, or :class:`ApiError`."""
        t0 = time.perf_counter()
        tenant = _tenant(state, None, authorization)
        dep = _deployment(state, labels, tenant, body.deployment, "deployment")
        lim = config.limits
        if len(body.prompts) > lim.max_prompts:
            raise ApiError(
                422,
                f"{len(body.prompts)} prompts; at most {lim.max_prompts} per request (limits.max_prompts)",
                param="prompts",
                code="too_many_prompts",
            )
        for i, p in enumerate(body.prompts):
            _check_prompt(state, p, f"prompts[{i}]")
        slot = dep.slot_for(tenant)
        for _ in range(5):
            rt = slot.current
            try:
                fut = rt.batcher.submit_async(body.prompts)
                break
            except BatcherClosed:  # a reload retired this runtime just now: use the new one
                continue
            except QueueFull as e:
                state.metrics.rejected.labels(dep.name, "queue_full").inc()
                raise ApiError(
                    429,
                    "screen queue full, retry later",
                    type="rate_limit_error",
                    code="queue_full",
                    headers={"Retry-After": str(int(e.retry_after_s + 0.999))},
                ) from None
        else:
            raise ApiError(
                503, "policy reloading, retry", type="server_error", code="reloading", headers={"Retry-After": "1"}
            )
        # the deadline is a timer on the future itself (no extra task per request); a request that
        # times out while still queued is dropped by the batcher unscreened
        deadline = asyncio.get_running_loop().call_later(config.screen.timeout_s, _time_out, fut)
        try:
            got = await fut
        except asyncio.TimeoutError:
            state.metrics.rejected.labels(dep.name, "timeout").inc()
            raise ApiError(
                504, f"screening took over {config.screen.timeout_s:g} s", type="server_error", code="timeout"
            ) from None
        except GuardInputError as e:
            raise ApiError(422, str(e), param="prompts", code="invalid_prompt") from None
        finally:
            deadline.cancel()
        m = state.metrics
        rule = "fail_open" if rt.guard.policy.fail_open else "fail_closed"
        for err in got.errors:
            m.fail_closed.labels(dep.name, _stage_of(err), rule).inc()
        results = []
        for r in got.results:
            d = r.to_dict()
            failed = bool(got.errors) and r.concept is None and r.decision != "allow"
            stage = "error" if failed else ("screen" if r.decision != "allow" else "none")
            category = (r.category if r.decision != "allow" else None) or "none"
            m.prompts.labels(dep.name, r.decision, stage, category).inc()
            results.append(
                {
                    k: d[k]
                    for k in (
                        "index",
                        "decision",
                        "category",
                        "concept",
                        "phrase",
                        "score",
                        "threshold",
                        "reasons",
                        "transforms",
                        "matches",
                    )
                }
            )
        rid = uuid.uuid4().hex
        return (
            {
                "request_id": rid,
                "deployment": dep.name,
                "policy": {"name": rt.name, "sha256": rt.sha256},
                "results": results,
                "errors": got.errors,
                "batch_prompts": got.batch_prompts,
                "timings_ms": {
                    "queue": round(got.wait_ms, 3),
                    "screen_batch": round(got.screen_ms, 3),
                    "total": round((time.perf_counter() - t0) * 1000, 3),
                },
            },
            {"X-Request-ID": rid, "X-Guard-Policy-Sha256": rt.sha256},
        )

    @app.post("/v1/screen", response_model=ScreenResponse, responses=_ERRORS, tags=["screen"])
    async def screen(body: ScreenRequest, request: Request):
        """Screen prompts under a deployment's policy (the tenant's, if it has its own). Concurrent
        requests are micro-batched into one encoder pass."""
        payload, headers = await screen_core(body, request.headers.get("authorization"), request.scope["guard.labels"])
        return JSONResponse(payload, headers=headers)

    # middleware, the last added outermost: metrics, then the body limit, then the screen fast path
    if config.screen.fast_path:
        app.add_middleware(ScreenFastPath, core=screen_core)
    app.add_middleware(BodyLimit, limit=config.limits.max_body_bytes)
    app.add_middleware(RequestMetrics, state=state)

    # ------------------------------------------------------------------ images

    async def run_images(dep: Deployment, tenant: Tenant, kwargs: dict[str, Any], seed: int | None):
        import torch

        slot = dep.slot_for(tenant)
        rt = slot.current
        seed = seed if seed is not None else dep.call_defaults.get("seed")
        if seed is not None:
            kwargs["generator"] = torch.Generator("cpu").manual_seed(int(seed))
        if kwargs.get("negative_prompt") is None and dep.call_defaults.get("negative_prompt"):
            kwargs["negative_prompt"] = dep.call_defaults["negative_prompt"]
        for k in ("num_inference_steps", "guidance_scale", "strength"):
            if k in dep.call_defaults:
                kwargs.setdefault(k, dep.call_defaults[k])
        kwargs["output_type"] = "pil"
        m = state.metrics
        try:
            job = dep.pool.submit(kwargs, rt)
        except PoolFull as e:
            m.rejected.labels(dep.name, "queue_full").inc()
            raise ApiError(
                429,
                f"deployment {dep.name!r} is busy ({e}); retry later",
                type="rate_limit_error",
                code="queue_full",
                headers={"Retry-After": str(int(e.retry_after_s + 0.999))},
            ) from None
        except PoolClosed as e:
            raise ApiError(503, str(e), type="server_error", code="shutting_down") from None
        try:
            out = await asyncio.wait_for(asyncio.wrap_future(job.future), dep.cfg.timeout_s)
        except asyncio.TimeoutError:
            m.rejected.labels(dep.name, "timeout").inc()
            raise ApiError(
                504,
                f"the request did not finish within timeout_s={dep.cfg.timeout_s:g} s (deployment {dep.name!r})",
                type="server_error",
                code="timeout",
            ) from None
        except GuardBlocked as e:  # the policy says on_block: raise
            report = e.report
            guards = [_image_guard(im, report) for im in report.images]
            _count_images(dep, report, guards)
            raise ApiError(
                400,
                str(e),
                code="content_policy_violation",
                request_id=report.request_id,
                policy_sha256=report.policy_sha256,
                guard=guards,
            ) from None
        except GuardInputError as e:
            raise ApiError(422, str(e), code="invalid_request") from None
        except Exception as e:  # the pipeline itself failed (its guard writes the audit line)
            logger.exception("deployment %s: generation failed", dep.name)
            raise ApiError(
                500, f"generation failed: {type(e).__name__}: {e}", type="server_error", code="generation_failed"
            ) from None
        report = out.guard_report
        for stage, ms in report.timings_ms.items():
            m.stage_seconds.labels(dep.name, stage).observe(ms / 1000)
        if job.t_start is not None:
            m.stage_seconds.labels(dep.name, "queue").observe(job.t_start - job.t_submit)
        rule = "fail_open" if rt.guard.policy.fail_open else "fail_closed"
        for err in report.errors:
            m.fail_closed.labels(dep.name, _stage_of(err), rule).inc()
        guards = [_image_guard(im, report) for im in report.images]
        _count_images(dep, report, guards)
        blocked_prompt = [
            g for g in guards if g["decision"] == "blocked" and g["stage"] in ("screen", "input", "error")
        ]
        if blocked_prompt and dep.cfg.on_block == "error":
            g = blocked_prompt[0]
            why = g["reasons"][0] if g["reasons"] else "blocked"
            raise ApiError(
                400,
                f"Your request was rejected by the content policy of deployment {dep.name!r}: {why}",
                code="content_policy_violation",
                param="image" if g["stage"] == "input" else "prompt",
                request_id=report.request_id,
                policy_sha256=report.policy_sha256,
                guard=guards,
            )
        b64 = await asyncio.to_thread(_png_b64, list(out.images))
        return JSONResponse(
            {
                "created": int(time.time()),
                "data": [{"b64_json": b, "guard": g} for b, g in zip(b64, guards, strict=True)],
                "guard": {
                    "request_id": report.request_id,
                    "deployment": dep.name,
                    "policy": {"name": report.policy_name, "sha256": report.policy_sha256},
                    "errors": report.errors,
                    "notes": report.notes,
                    "timings_ms": {k: round(v, 3) for k, v in report.timings_ms.items()},
                },
            },
            headers={"X-Request-ID": report.request_id, "X-Guard-Policy-Sha256": report.policy_sha256},
        )

    def _count_images(dep: Deployment, report: Any, guards: list[dict]) -> None:
        for g in guards:
            state.metrics.images.labels(dep.name, g["decision"], g["stage"] or "none", g["category"] or "none").inc()

    @app.post("/v1/images/generations", response_model=ImagesResponse, responses=_ERRORS, tags=["images"])
    async def generations(body: ImageGenerationRequest, request: Request):
        """Generate images on a text2img deployment (OpenAI images API shape; ``model`` = deployment)."""
        tenant = _tenant(state, request)
        dep = _deployment(state, request.scope["guard.labels"], tenant, body.model, "model", ("text2img",))
        _check_prompt(state, body.prompt, "prompt")
        _check_n(state, body.n)
        w, h = _parse_size(body.size, dep.default_size, state)
        if body.negative_prompt is not None:
            _check_prompt(state, body.negative_prompt, "negative_prompt")
        kwargs = {
            "prompt": body.prompt,
            "num_images_per_prompt": body.n,
            "width": w,
            "height": h,
            "negative_prompt": body.negative_prompt,
        }
        return await run_images(dep, tenant, kwargs, body.seed)

    @app.post("/v1/images/edits", response_model=ImagesResponse, responses=_ERRORS, tags=["images"])
    async def edits(
        request: Request,
        image: Annotated[UploadFile, File(description="the image to edit (PNG, JPEG, WebP)")],
        prompt: Annotated[str, Form()],
        model: Annotated[str, Form(description="deployment name")],
        mask: Annotated[
            UploadFile | None,
            File(description="inpaint deployments: where to repaint (transparent or white pixels)"),
        ] = None,
        n: Annotated[int, Form()] = 1,
        size: Annotated[str | None, Form()] = None,
        response_format: Annotated[str, Form()] = "b64_json",
        user: Annotated[str | None, Form()] = None,
        seed: Annotated[int | None, Form()] = None,
        negative_prompt: Annotated[str | None, Form()] = None,
    ):
        """Edit an image on an img2img or inpaint deployment (OpenAI images edits shape, multipart). The
        input image goes through the policy's input-image check."""
        tenant = _tenant(state, request)
        dep = _deployment(state, request.scope["guard.labels"], tenant, model, "model", ("img2img", "inpaint"))
        _check_prompt(state, prompt, "prompt")
        _check_n(state, n)
        if response_format != "b64_json":
            raise ApiError(422, "response_format must be 'b64_json' (no URLs are hosted)", param="response_format")
        if negative_prompt is not None:
            _check_prompt(state, negative_prompt, "negative_prompt")
        if dep.kind == "img2img" and mask is not None:
            raise ApiError(
                422, f"deployment {dep.name!r} is img2img and takes no mask; use an inpaint deployment", param="mask"
            )
        if dep.kind == "inpaint" and mask is None:
            raise ApiError(422, f"deployment {dep.name!r} is an inpaint deployment: send a `mask`", param="mask")
        raw = await image.read()
        raw_mask = await mask.read() if mask is not None else None
        init = await asyncio.to_thread(_read_image, raw, "image", config.limits.max_input_pixels)
        target = size if size is not None else None
        w, h = _parse_size(
            target, (init.width // 8 * 8, init.height // 8 * 8), state, param="size" if size is not None else "image"
        )
        mask_img = None
        if raw_mask is not None:
            mask_img = await asyncio.to_thread(_read_mask, raw_mask, config.limits.max_input_pixels, init.size)
            mask_img = mask_img.resize((w, h))
        init = init.convert("RGB").resize((w, h))
        kwargs: dict[str, Any] = {
            "prompt": prompt,
            "image": init,
            "num_images_per_prompt": n,
            "negative_prompt": negative_prompt,
        }
        if dep.kind == "inpaint":
            kwargs.update(mask_image=mask_img, width=w, height=h)
        return await run_images(dep, tenant, kwargs, seed)

    # ------------------------------------------------------------------ information

    @app.get("/v1/deployments", response_model=DeploymentsResponse, responses=_ERRORS, tags=["info"])
    async def deployments(request: Request):
        """The deployments this key may use."""
        tenant = _tenant(state, request)
        out = []
        for dep in state.deployments.values():
            if not tenant.allows(dep.name):
                continue
            rt = dep.slot_for(tenant).current
            out.append(
                DeploymentInfo(
                    name=dep.name,
                    description=dep.cfg.description,
                    kind=dep.kind,
                    endpoints=ENDPOINTS[dep.kind],
                    ready=dep.ready,
                    policy={"name": rt.name, "sha256": rt.sha256} if rt else None,
                    pool=dep.cfg.pool if dep.kind != "screen" else 0,
                    queue=dep.cfg.queue if dep.kind != "screen" else 0,
                    queue_depth=dep.pool.waiting if dep.pool else (rt.batcher.pending if rt else 0),
                    running=dep.pool.running if dep.pool else 0,
                    on_block=dep.cfg.on_block,
                    default_size=f"{dep.default_size[0]}x{dep.default_size[1]}" if dep.default_size else None,
                )
            )
        return DeploymentsResponse(data=out)

    @app.get("/v1/policies/{deployment}", response_model=PolicyInfo, responses=_ERRORS, tags=["info"])
    async def policy(deployment: str, request: Request):
        """The policy this key's requests to ``deployment`` run under: name, sha256, source, load time,
        and the error of the last refused reload, if any."""
        tenant = _tenant(state, request)
        if not tenant.allows(deployment):
            raise ApiError(
                403,
                f"this API key may not use deployment {deployment!r}",
                type="permission_error",
                code="forbidden",
                param="deployment",
            )
        dep = state.deployments.get(deployment)
        if dep is None:
            raise ApiError(404, f"no deployment {deployment!r}", code="deployment_not_found", param="deployment")
        request.scope["guard.labels"]["deployment"] = dep.name
        slot = dep.slot_for(tenant)
        info = slot.status()
        if slot.current is not None:
            info["concepts"] = len(slot.current.guard.policy.concepts)
            info["fail_open"] = slot.current.guard.policy.fail_open
        return PolicyInfo(**info)

    @app.get("/healthz", tags=["health"])
    async def healthz():
        """The process is alive and answering."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(strict: bool = False):
        """200 once every deployment's models are loaded and policies valid; 503 before (and while
        shutting down). A policy file refused on reload shows in ``policy_errors`` (the last good
        policy keeps serving); with ``?strict=true`` it makes this 503 too."""
        r = state.readiness()
        bad = any(d["policy_errors"] for d in r["deployments"].values())
        ok = r["ready"] and not (strict and bad)
        return JSONResponse(r, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"])
    async def metrics():
        """Prometheus text format."""
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload", response_model=ReloadResponse, responses=_ERRORS, tags=["admin"])
    async def admin_reload(request: Request):
        """Reload every policy now (admin key). Each new policy is fully built before it replaces the
        old one; a refused file keeps the old policy and its error (file:line) is in the result.
        422 when any reload was refused."""
        try:
            state.keys.check_admin(request.headers.get("authorization"))
        except AuthError as e:
            state.metrics.auth_failures.labels(e.reason).inc()
            raise ApiError(
                e.status, str(e), type="authentication_error", code=e.reason, headers={"WWW-Authenticate": "Bearer"}
            ) from None
        results = await asyncio.to_thread(state.reload_all, "POST /admin/reload")
        ok = all(r["result"] != "failed" for r in results)
        return JSONResponse({"ok": ok, "results": results}, status_code=200 if ok else 422)

    # ------------------------------------------------------------------ playground

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _read_image(raw: bytes, param: str, max_pixels: int) -> Any:
    import PIL.Image

    if not raw:
        raise ApiError(422, f"{param} is empty", param=param, code="invalid_image")
    try:
        img = PIL.Image.open(io.BytesIO(raw))
        w, h = img.size
        if w * h > max_pixels:
            raise ApiError(
                422,
                f"{param} is {w}x{h} = {w * h} pixels, over limits.max_input_pixels={max_pixels}",
                param=param,
                code="image_too_large",
            )
        img.load()
    except ApiError:
        raise
    except Exception as e:
        raise ApiError(
            422,
            f"{param} is not a readable image (PNG, JPEG, WebP): {type(e).__name__}",
            param=param,
            code="invalid_image",
        ) from None
    return img


def _read_mask(raw: bytes, max_pixels: int, size: tuple[int, int]) -> Any:
    """White (or, for RGBA masks as the OpenAI API uses them, transparent) = repaint."""
    import PIL.Image
    import PIL.ImageOps

    m = _read_image(raw, "mask", max_pixels)
    if m.size != size:
        raise ApiError(
            422, f"mask is {m.size[0]}x{m.size[1]} but image is {size[0]}x{size[1]}", param="mask", code="invalid_mask"
        )
    if m.mode in ("RGBA", "LA") or (m.mode == "P" and "transparency" in m.info):
        alpha = m.convert("RGBA").getchannel("A")
        return PIL.ImageOps.invert(alpha).convert("L")
    return m.convert("L")
