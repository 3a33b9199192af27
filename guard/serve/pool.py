"""A deployment's pipeline workers and their bounded queue.

Each worker thread owns one guarded pipeline object: a ``from_pipe`` copy of the deployment's
pipeline that shares the weights but has its own scheduler and tokenizer (diffusers schedulers and
fast tokenizers keep per-call state and are not thread-safe). A pipeline object is only ever called
from its own worker thread, one call at a time. At most ``pool`` requests run and ``queue`` wait;
a request beyond that is refused at once (:class:`PoolFull`, answered with 429 and Retry-After).
A request that timed out before a worker took it is dropped unrun. ``close()`` lets the workers
finish everything already admitted, then stops them.
"""

from __future__ import annotations

import concurrent.futures
import copy
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


class PoolFull(Exception):
    def __init__(self, retry_after_s: float, waiting: int, capacity: int):
        super().__init__(f"deployment queue full ({waiting} waiting, capacity {capacity})")
        self.retry_after_s = retry_after_s


class PoolClosed(RuntimeError):
    pass


@dataclass
class Job:
    kwargs: dict[str, Any]
    runtime: Any  # PolicyRuntime the request was admitted under
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    t_submit: float = field(default_factory=time.perf_counter)
    t_start: float | None = None


def worker_copy(base: Any, pipeline_cls: type, component: Any) -> Any:
    """A pipeline of ``pipeline_cls`` on ``base``'s weights with its own scheduler and tokenizer(s)."""
    own: dict[str, Any] = {"guard": component}
    for name in ("scheduler",):
        s = getattr(base, name, None)
        if s is not None:
            own[name] = type(s).from_config(s.config)
    for name in ("tokenizer", "tokenizer_2"):
        t = getattr(base, name, None)
        if t is not None:
            own[name] = copy.deepcopy(t)
    pipe = pipeline_cls.from_pipe(base, **own)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def use_guard(pipe: Any, component: Any) -> None:
    """Make ``component`` (an already built :class:`guard.pipelines.GuardComponent`) the pipeline's
    guard. Only called by the worker that owns ``pipe``, between calls."""
    if getattr(pipe, "guard", None) is not component:
        pipe.register_modules(guard=component)


class PipelinePool:
    def __init__(
        self, name: str, pipes: list[Any], queue_size: int, on_change: Callable[[int, int], None] | None = None
    ):
        self.name = name
        self.pipes = pipes
        self.size = len(pipes)
        self.queue_size = queue_size
        self.capacity = self.size + queue_size
        self._q: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._admitted = 0  # running + waiting
        self._running = 0
        self._closed = False
        self._on_change = on_change
        self._avg_s = 1.0
        self._owner: dict[int, int] = {}  # id(pipe) -> worker thread ident, checked on every call
        self._threads = [
            threading.Thread(target=self._work, args=(i, p), name=f"guard-{name}-w{i}", daemon=True)
            for i, p in enumerate(pipes)
        ]
        for t in self._threads:
            t.start()

    @property
    def waiting(self) -> int:
        return self._admitted - self._running

    @property
    def running(self) -> int:
        return self._running

    def submit(self, kwargs: dict[str, Any], runtime: Any) -> Job:
        with self._lock:
            if self._closed:
                raise PoolClosed(f"deployment {self.name!r} is shutting down")
            if self._admitted >= self.capacity:
                waiting = self._admitted - self._running
                raise PoolFull(max(1.0, self._avg_s * (waiting + 1) / self.size), waiting, self.capacity)
            self._admitted += 1
            job = Job(kwargs, runtime)
            self._q.put(job)
        self._changed()
        return job

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.waiting, self._running)

    def _work(self, index: int, pipe: Any) -> None:
        me = threading.get_ident()
        self._owner[id(pipe)] = me
        while True:
            job = self._q.get()
            if job is None:
                return
            if not job.future.set_running_or_notify_cancel():  # timed out while waiting: never run
                with self._lock:
                    self._admitted -= 1
                self._changed()
                continue
            with self._lock:
                self._running += 1
            self._changed()
            job.t_start = time.perf_counter()
            try:
                if self._owner.get(id(pipe)) != me:
                    raise RuntimeError("pipeline object used by two workers")  # cannot happen by design
                use_guard(pipe, job.runtime.component)
                out = pipe(**job.kwargs)
                job.future.set_result(out)
            except BaseException as e:
                job.future.set_exception(e)
            finally:
                dt = time.perf_counter() - job.t_start
                self._avg_s = 0.8 * self._avg_s + 0.2 * dt
                with self._lock:
                    self._running -= 1
                    self._admitted -= 1
                self._changed()

    def close(self, timeout: float = 120.0) -> None:
        """Finish every admitted job, then stop the workers."""
        with self._lock:
            self._closed = True
        for _ in self._threads:
            self._q.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
