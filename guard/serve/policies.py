"""Policies a server runs under, and their validated atomic hot reload.

A :class:`PolicySlot` is one (deployment, tenant) policy. Its :class:`PolicyRuntime` — the loaded
policy, its :class:`~guard.core.Guard` with the screen index built and classifiers loaded, the
pipeline component and the screen micro-batcher — is immutable once built. A reload builds a whole
new runtime first and only then swaps the slot's reference, so a request that took the old runtime
finishes on it and no request ever sees a half-loaded policy. A reload that fails (a YAML or
schema error, with file:line; erasers that differ from the weights') keeps the old runtime and
records the error for the response, the log, ``/readyz`` and the metrics.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guard.audit import AuditLog, utc_now
from guard.errors import GuardError
from guard.policy import load_policy

logger = logging.getLogger(__name__)


class ReloadRefused(GuardError):
    """The new policy loaded but cannot replace the running one (e.g. different erasers)."""


@dataclass(frozen=True)
class PolicyRuntime:
    guard: Any  # guard.core.Guard
    component: Any  # guard.pipelines.GuardComponent for pipeline deployments, else None
    batcher: Any  # guard.serve.batcher.ScreenBatcher
    name: str
    sha256: str
    source: str | None
    loaded_at: str
    erasers: tuple

    def close(self) -> None:
        self.batcher.close()


def _file_stamp(path: str | None) -> tuple[int, int] | None:
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


class PolicySlot:
    def __init__(
        self,
        deployment: str,
        tenant: str | None,
        ref: str,
        *,
        for_pipeline: bool,
        audit: AuditLog | None,
        batcher_factory: Callable[[Any, str], Any],
    ):
        self.deployment = deployment
        self.tenant = tenant
        self.ref = ref
        self.for_pipeline = for_pipeline
        self._audit = audit
        self._batcher_factory = batcher_factory
        self._lock = threading.Lock()
        self.current: PolicyRuntime | None = None
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self.last_reload_at: str | None = None
        self._stamp: tuple[int, int] | None = None
        self._file_sha: str | None = None  # sha256 of the policy as read from its file
        self._retired: list[PolicyRuntime] = []

    @property
    def label(self) -> str:
        return self.deployment if self.tenant is None else f"{self.deployment} (tenant {self.tenant})"

    def validate(self) -> None:
        """Load the policy file once, without building anything (fail fast at startup)."""
        load_policy(self.ref)

    def _build(
        self, policy: Any = None, cache: BuildCache | None = None, stamp: tuple[int, int] | None = None
    ) -> PolicyRuntime:
        """``stamp``: the file's (mtime, size) taken before ``policy`` was read (without a policy, it is
        read here through ``cache``, which takes the stamp first), so that a write during the read is seen
        as a change by the next poll."""
        cache = cache if cache is not None else BuildCache()
        if policy is None:
            policy = cache.policy(self.ref, self._source_path())
            stamp = cache.stamp(self.ref)
        erasers: tuple = ()
        if self.for_pipeline:
            from guard.erase.wiring import policy_erasers

            erasers = tuple(policy_erasers(policy))
            if self.current is not None and erasers != self.current.erasers:
                raise ReloadRefused(
                    f"{policy.source or self.ref}: the new policy's erasers {list(erasers)} differ from the "
                    f"running ones {list(self.current.erasers)}; erasers edit the shared UNet weights, so "
                    "changing them needs a restart of the server"
                )
        guard, component = cache.guard(policy, self.for_pipeline, self._audit)
        batcher = self._batcher_factory(guard, self.deployment)
        rt = PolicyRuntime(
            guard=guard,
            component=component,
            batcher=batcher,
            name=guard.policy.name,
            sha256=guard.policy_sha256,
            source=policy.source,
            loaded_at=utc_now(),
            erasers=erasers,
        )
        self._stamp = stamp
        self._file_sha = policy.sha256
        return rt

    def _source_path(self) -> str | None:
        if self.current is not None and self.current.source:
            return self.current.source
        p = Path(os.path.expanduser(self.ref))
        if p.is_file():
            return str(p.resolve())
        try:
            from guard.policy import resolve_policy_path

            return str(resolve_policy_path(self.ref))
        except Exception:
            return None

    def load(self, cache: BuildCache | None = None) -> PolicyRuntime:
        with self._lock:
            self.current = self._build(cache=cache)
            return self.current

    def reload(self, trigger: str, cache: BuildCache | None = None) -> dict[str, Any]:
        """Build the policy anew and swap it in; on any error keep the running one. Returns what
        happened: ``{result: ok|unchanged|failed, sha256, previous_sha256, error}``. ``cache`` shares
        the parsed file and the built guard between slots reloaded together."""
        cache = cache if cache is not None else BuildCache()
        with self._lock:
            old = self.current
            self.last_reload_at = utc_now()
            path = self._source_path()
            try:
                policy = cache.policy(self.ref, path)
                if old is not None and policy.sha256 == self._file_sha:
                    self._stamp = cache.stamp(self.ref)
                    self.last_error = self.last_error_at = None
                    return {"result": "unchanged", "sha256": old.sha256, "previous_sha256": old.sha256, "error": None}
                new = self._build(policy, cache, cache.stamp(self.ref))
            except Exception as e:  # a bad file must never take the server down
                msg = str(e) if isinstance(e, GuardError) else f"{type(e).__name__}: {e}"
                # retry on the next change, not every poll: the stamp of what was read (taken before
                # reading it), so that a file caught half-written (empty) is read again once complete
                self._stamp = cache.stamp(self.ref)
                self.last_error, self.last_error_at = msg, utc_now()
                logger.error(
                    "policy reload (%s) for %s refused, still serving %s: %s",
                    trigger,
                    self.label,
                    old.sha256[:12] if old else "nothing",
                    msg,
                )
                return {
                    "result": "failed",
                    "sha256": old.sha256 if old else None,
                    "previous_sha256": old.sha256 if old else None,
                    "error": msg,
                }
            self.current = new
            self.last_error = self.last_error_at = None
            if old is not None:
                self._retired.append(old)
                self._retire()
            logger.info(
                "policy reload (%s) for %s: %s -> %s (%s)",
                trigger,
                self.label,
                old.sha256[:12] if old else "-",
                new.sha256[:12],
                new.source or self.ref,
            )
            return {"result": "ok", "sha256": new.sha256, "previous_sha256": old.sha256 if old else None, "error": None}

    def _retire(self) -> None:
        # old runtimes' batchers finish what they hold; close them in the background
        olds, self._retired = self._retired, []
        for rt in olds:
            threading.Thread(target=rt.close, name="guard-retire", daemon=True).start()

    def changed_on_disk(self) -> bool:
        path = self._source_path()
        return path is not None and _file_stamp(path) != self._stamp

    def status(self) -> dict[str, Any]:
        rt = self.current
        return {
            "deployment": self.deployment,
            "tenant": self.tenant,
            "name": rt.name if rt else None,
            "sha256": rt.sha256 if rt else None,
            "source": rt.source if rt else self.ref,
            "loaded_at": rt.loaded_at if rt else None,
            "last_reload_at": self.last_reload_at,
            "error": self.last_error,
            "error_at": self.last_error_at,
        }

    def close(self) -> None:
        if self.current is not None:
            self.current.close()


class BuildCache:
    """Within one load or reload pass: each policy file is parsed once, and slots whose policies
    resolve to the same sha256 share one warmed-up :class:`~guard.core.Guard` (and component)."""

    def __init__(self) -> None:
        self._policies: dict[str, Any] = {}
        self._stamps: dict[str, tuple[int, int] | None] = {}
        self._guards: dict[tuple[str, bool], tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def policy(self, ref: str, path: str | None = None) -> Any:
        """The parsed policy (raises its error); ``path``: the file whose stamp to take before reading."""
        with self._lock:
            got = self._policies.get(ref)
        if got is None:
            stamp = _file_stamp(path)
            try:
                got = load_policy(ref)
            except Exception as e:
                got = e
            with self._lock:
                self._policies[ref] = got
                self._stamps[ref] = stamp
        if isinstance(got, Exception):
            raise got
        return got

    def stamp(self, ref: str) -> tuple[int, int] | None:
        """The (mtime, size) of ``ref``'s file taken just before this pass read it (None if not read)."""
        with self._lock:
            return self._stamps.get(ref)

    def guard(self, policy: Any, for_pipeline: bool, audit: AuditLog | None) -> tuple[Any, Any]:
        key = (policy.sha256, for_pipeline)
        with self._lock:
            got = self._guards.get(key)
        if got is not None:
            return got
        from guard.core import Guard

        if for_pipeline:
            from guard.pipelines import GuardComponent

            component = GuardComponent.from_policy(policy)
            guard = component.guard
        else:
            component, guard = None, Guard(policy)
        if audit is not None:
            guard.audit = audit
        guard.warmup()
        with self._lock:
            self._guards[key] = (guard, component)
        return guard, component


class PolicyWatcher:
    """Polls the slots' policy files' mtime and size and reloads a slot whose file changed."""

    def __init__(self, slots: list[PolicySlot], interval_s: float, on_result: Callable[[PolicySlot, dict], None]):
        self.slots = slots
        self.interval_s = interval_s
        self._on_result = on_result
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="guard-policy-watch", daemon=True)

    def start(self) -> None:
        if self.interval_s > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            cache = BuildCache()  # slots on one file share its parse and its guard
            for slot in self.slots:
                try:
                    if slot.current is not None and slot.changed_on_disk():
                        self._on_result(slot, slot.reload("file change", cache))
                except Exception:  # keep watching
                    logger.exception("policy watcher")
            time.sleep(0)
