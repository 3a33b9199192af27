"""Everything one running server holds: deployments (policy slots, pipeline pools), keys, metrics,
the policy watcher; loading at startup, reload, and the drain at shutdown."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from guard.audit import AuditLog
from guard.errors import GuardError, PolicyError
from guard.serve.auth import KeyRing, Tenant
from guard.serve.batcher import ScreenBatcher
from guard.serve.config import DeploymentConfig, ServeConfig
from guard.serve.metrics import Metrics
from guard.serve.policies import BuildCache, PolicySlot, PolicyWatcher
from guard.serve.pool import PipelinePool, worker_copy

logger = logging.getLogger(__name__)

ENDPOINTS = {
    "screen": ["/v1/screen"],
    "text2img": ["/v1/screen", "/v1/images/generations"],
    "img2img": ["/v1/screen", "/v1/images/edits"],
    "inpaint": ["/v1/screen", "/v1/images/edits"],
}


@dataclass
class Deployment:
    cfg: DeploymentConfig
    kind: str
    slot: PolicySlot
    tenant_slots: dict[str, PolicySlot] = field(default_factory=dict)
    spec: Any = None
    pool: PipelinePool | None = None
    ready: bool = False
    load_error: str | None = None
    default_size: tuple[int, int] | None = None  # (width, height)
    call_defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.cfg.name

    def slot_for(self, tenant: Tenant) -> PolicySlot:
        return self.tenant_slots.get(tenant.name, self.slot)

    def slots(self) -> list[PolicySlot]:
        return [self.slot, *self.tenant_slots.values()]


class ServerState:
    def __init__(self, config: ServeConfig):
        self.config = config
        self.metrics = Metrics()
        self.keys = KeyRing(config)
        a = config.audit
        self.audit = AuditLog(config.resolve_output(a.path), a.store_prompts) if a.path else None
        self.deployments: dict[str, Deployment] = {}
        self._bases: dict[str, tuple[Any, tuple, str]] = {}  # spec source -> (pipeline, erasers, deployment)
        self._reload_lock = threading.Lock()
        self.loaded = threading.Event()
        self.closing = False
        self.reload_count = 0
        for d in config.deployments:
            self.deployments[d.name] = self._declare(d)
        self.watcher = PolicyWatcher(self.all_slots(), config.reload.poll_seconds, self._record_reload)

    # ------------------------------------------------------------------ building

    def _batcher(self, guard: Any, deployment: str) -> ScreenBatcher:
        s = self.config.screen
        hist = self.metrics.batch_size.labels(deployment)
        stage = self.metrics.stage_seconds.labels(deployment, "screen_batch")

        def on_batch(n: int, seconds: float) -> None:
            hist.observe(n)
            stage.observe(seconds)

        return ScreenBatcher(
            guard,
            name=deployment,
            max_wait_s=s.max_wait_ms / 1000,
            max_batch=s.max_batch,
            max_pending=s.max_pending,
            on_batch=on_batch,
        )

    def _declare(self, d: DeploymentConfig) -> Deployment:
        """Resolve references and validate every policy file now (errors name file:line); the heavy
        loading happens in :meth:`load`."""
        from guard.spec import load_spec

        spec = None
        if d.screen_only:
            kind = "screen"
            ref = self.config.resolve(d.policy) if d.policy else "default"
        else:
            spec = load_spec(self.config.resolve(d.pipeline))
            kind = d.kind or spec.pipeline
            ref = self.config.resolve(d.policy) if d.policy else spec.policy_ref()
        mk = dict(for_pipeline=not d.screen_only, audit=self.audit, batcher_factory=self._batcher)
        slot = PolicySlot(d.name, None, ref, **mk)
        dep = Deployment(cfg=d, kind=kind, slot=slot, spec=spec)
        for t in self.config.tenants:
            if d.name in t.policies:
                dep.tenant_slots[t.name] = PolicySlot(d.name, t.name, self.config.resolve(t.policies[d.name]), **mk)
        for s in dep.slots():
            try:
                s.validate()
            except PolicyError as e:
                raise PolicyError(
                    f"deployment {d.name!r}" + (f" tenant {s.tenant!r}" if s.tenant else "") + f": {e}"
                ) from None
        self.metrics.queue_depth.labels(d.name).set(0)
        self.metrics.policy_error.labels(d.name).set(0)
        return dep

    def all_slots(self) -> list[PolicySlot]:
        return [s for dep in self.deployments.values() for s in dep.slots()]

    def load(self) -> None:
        """Build every deployment (screen-only ones first: they are ready in a second)."""
        order = sorted(self.deployments.values(), key=lambda d: d.kind != "screen")
        cache = BuildCache()
        for dep in order:
            if self.closing:
                break
            try:
                self._load_deployment(dep, cache)
                dep.ready = True
                logger.info(
                    "deployment %s ready (%s, policy %s %s)",
                    dep.name,
                    dep.kind,
                    dep.slot.current.name,
                    dep.slot.current.sha256[:12],
                )
            except Exception as e:
                dep.load_error = str(e) if isinstance(e, GuardError) else f"{type(e).__name__}: {e}"
                logger.error("deployment %s failed to load: %s", dep.name, dep.load_error)
        self.watcher.start()
        self.loaded.set()

    def _load_deployment(self, dep: Deployment, cache: BuildCache) -> None:
        for s in dep.slots():
            s.load(cache)
        if dep.kind == "screen":
            return
        rt = dep.slot.current
        for s in dep.tenant_slots.values():
            if s.current.erasers != rt.erasers:
                raise GuardError(
                    f"tenant {s.tenant!r} policy for {dep.name!r} lists erasers {list(s.current.erasers)}"
                    f" but the deployment's weights carry {list(rt.erasers)}; give the tenant a policy "
                    "with the same erasers, or its own deployment"
                )
        base = self._base_pipeline(dep, rt)
        cls = _pipeline_class(dep.kind)
        pipes = [worker_copy(base, cls, rt.component) for _ in range(dep.cfg.pool)]
        m = self.metrics
        qd, busy = m.queue_depth.labels(dep.name), m.busy_workers.labels(dep.name)

        def on_change(waiting: int, running: int) -> None:
            qd.set(waiting)
            busy.set(running)

        dep.pool = PipelinePool(dep.name, pipes, dep.cfg.queue, on_change=on_change)
        sd = dep.spec.defaults
        f = getattr(base, "vae_scale_factor", 8)
        native = int(base.unet.config.sample_size) * f
        dep.default_size = (sd.width or native, sd.height or native)
        o = dep.cfg.defaults
        dep.call_defaults = {
            "num_inference_steps": o.num_inference_steps or sd.num_inference_steps,
            "guidance_scale": o.guidance_scale if o.guidance_scale is not None else sd.guidance_scale,
        }
        if dep.kind in ("img2img", "inpaint"):
            dep.call_defaults["strength"] = o.strength if o.strength is not None else 0.75
        dep.call_defaults["seed"] = sd.seed
        dep.call_defaults["negative_prompt"] = sd.negative_prompt

    def _base_pipeline(self, dep: Deployment, rt: Any) -> Any:
        """One set of weights per spec file, shared by every deployment and worker built on it."""
        from guard.spec import build_pipeline

        key = str(dep.spec._base_dir / dep.spec.name) if dep.spec._base_dir else dep.spec.name
        if key in self._bases:
            pipe, erasers, owner = self._bases[key]
            if erasers != rt.erasers:
                raise GuardError(
                    f"deployments {owner!r} and {dep.name!r} share the weights of pipeline spec "
                    f"{dep.spec.name!r} but their policies list different erasers "
                    f"({list(erasers)} vs {list(rt.erasers)})"
                )
            return pipe
        pipe = build_pipeline(dep.spec, policy=rt.guard.policy)
        pipe.set_progress_bar_config(disable=True)
        self._bases[key] = (pipe, rt.erasers, dep.name)
        return pipe

    # ------------------------------------------------------------------ reload

    def _record_reload(self, slot: PolicySlot, res: dict[str, Any]) -> None:
        m = self.metrics
        m.reloads.labels(slot.deployment, res["result"]).inc()
        if res["result"] == "failed":
            m.reload_failures.labels(slot.deployment).inc()
        else:
            self.reload_count += 1
        dep = self.deployments[slot.deployment]
        m.policy_error.labels(slot.deployment).set(1 if any(s.last_error for s in dep.slots()) else 0)

    def reload_all(self, trigger: str) -> list[dict[str, Any]]:
        """Reload every ready slot's policy (one reload at a time)."""
        out = []
        cache = BuildCache()
        with self._reload_lock:
            for dep in self.deployments.values():
                if not dep.ready:
                    continue
                for slot in dep.slots():
                    res = slot.reload(trigger, cache)
                    self._record_reload(slot, res)
                    out.append({"deployment": slot.deployment, "tenant": slot.tenant, **res})
        return out

    # ------------------------------------------------------------------ status and shutdown

    def readiness(self) -> dict[str, Any]:
        deps = {}
        for dep in self.deployments.values():
            deps[dep.name] = {
                "ready": dep.ready,
                "error": dep.load_error,
                "policy_sha256": dep.slot.current.sha256 if dep.slot.current else None,
                "policy_errors": [f"{s.label}: {s.last_error}" for s in dep.slots() if s.last_error],
            }
        ready = self.loaded.is_set() and all(d.ready for d in self.deployments.values()) and not self.closing
        return {"ready": ready, "loading": not self.loaded.is_set(), "closing": self.closing, "deployments": deps}

    def close(self) -> None:
        """Stop the watcher, let every pool and batcher finish what it admitted, flush the audit log."""
        self.closing = True
        self.watcher.stop()
        for dep in self.deployments.values():
            if dep.pool is not None:
                dep.pool.close()
        for s in self.all_slots():
            s.close()
        paths = {self.audit.path} if self.audit else set()
        for s in self.all_slots():
            a = getattr(s.current.guard, "audit", None) if s.current else None
            if a is not None:
                paths.add(a.path)
        for p in paths:
            _fsync(p)
        logger.info("guard serve stopped; audit log(s) flushed: %s", ", ".join(map(str, paths)) or "none")


def _fsync(path: Any) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pipeline_class(kind: str) -> type:
    from guard.pipelines import (
        GuardedStableDiffusionImg2ImgPipeline,
        GuardedStableDiffusionInpaintPipeline,
        GuardedStableDiffusionPipeline,
    )

    return {
        "text2img": GuardedStableDiffusionPipeline,
        "img2img": GuardedStableDiffusionImg2ImgPipeline,
        "inpaint": GuardedStableDiffusionInpaintPipeline,
    }[kind]
