"""Micro-batching for ``/v1/screen``: prompts of concurrent requests go through one encoder pass.

One thread per policy runtime takes the first waiting request as soon as the encoder is free,
gathers whatever else arrives within ``max_wait_s`` (5 ms by default) up to ``max_batch`` prompts,
screens them together with :meth:`guard.core.Guard.screen_prompts` and hands each request its own
slice. Batching adds at most ``max_wait_s`` to a request's time; a busy encoder makes the next
batch bigger instead.
The number of waiting prompts is bounded (:class:`QueueFull` beyond it, answered with 429).

Two ways in: :meth:`ScreenBatcher.submit` (any thread; a ``concurrent.futures.Future``) and
:meth:`ScreenBatcher.submit_async` (on an event loop; an ``asyncio.Future``). The server uses the
second: when a batch is screened, all its requests of one loop are answered with one
``call_soon_threadsafe`` (one wake-up of the loop per batch, not one per request), and a request whose
caller gave up (its future done: timed out or cancelled) is dropped from the queue unscreened.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from guard.errors import GuardInputError

logger = logging.getLogger(__name__)


class BatcherClosed(RuntimeError):
    """The batcher was retired by a policy reload; submit to the slot's current one."""


class QueueFull(Exception):
    def __init__(self, retry_after_s: float):
        super().__init__("screen queue full")
        self.retry_after_s = retry_after_s


@dataclass
class ScreenBatch:
    """What one request gets back: its results, the report's errors, and the batch it rode in."""

    results: list[Any]
    errors: list[str]
    batch_prompts: int
    screen_ms: float
    wait_ms: float


@dataclass
class _Item:
    prompts: list[str]
    future: Any  # concurrent.futures.Future, or asyncio.Future when `loop` is set
    loop: asyncio.AbstractEventLoop | None = None
    t_submit: float = field(default_factory=time.perf_counter)

    def start(self) -> bool:
        """False when the caller gave up before the screen took this request."""
        if self.loop is None:
            return self.future.set_running_or_notify_cancel()
        return not self.future.done()  # read from the batcher thread: at worst a late give-up is screened


def _resolve(pairs: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    """On the loop: hand each waiting request its slice (unless it gave up meanwhile)."""
    for fut, result, error in pairs:
        if not fut.done():
            if error is None:
                fut.set_result(result)
            else:
                fut.set_exception(error)


class ScreenBatcher:
    def __init__(
        self,
        guard: Any,
        *,
        name: str = "screen",
        max_wait_s: float = 0.005,
        max_batch: int = 128,
        max_pending: int = 4096,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        self.guard = guard
        self.max_wait_s = max_wait_s
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._on_batch = on_batch
        self._items: collections.deque[_Item] = collections.deque()
        self._pending = 0
        self._cv = threading.Condition()
        self._closed = False
        self._last_ms_per_prompt = 2.0
        self._thread = threading.Thread(target=self._run, name=f"guard-screen-{name}", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, prompts: Sequence[str]) -> concurrent.futures.Future:
        """Queue ``prompts`` (from any thread); the future gets a :class:`ScreenBatch`."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._enqueue(_Item(list(prompts), fut))
        return fut

    def submit_async(self, prompts: Sequence[str]) -> asyncio.Future:
        """Queue ``prompts`` from a coroutine; await the returned future for the :class:`ScreenBatch`.
        Cancel it (or set it done) to give up: the request is then dropped if not yet screened."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._enqueue(_Item(list(prompts), fut, loop))
        return fut

    def _enqueue(self, item: _Item) -> None:
        n = len(item.prompts)
        with self._cv:
            if self._closed:
                raise BatcherClosed("screen batcher is closed")
            if self._pending + n > self.max_pending:
                raise QueueFull(max(1.0, self._pending * self._last_ms_per_prompt / 1000))
            self._items.append(item)
            self._pending += n
            if len(self._items) == 1:  # the thread waits only when the queue was empty
                self._cv.notify()

    def close(self, timeout: float = 30.0) -> None:
        """Screen what is waiting, then stop the thread."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout)

    # ------------------------------------------------------------------ the thread

    def _take(self) -> list[_Item]:
        """The next batch: the oldest live request and whatever joins it within ``max_wait_s``.
        Requests whose caller gave up (a cancelled future) are dropped unscreened. ``[]`` = closed."""
        with self._cv:
            first = None
            while first is None:
                while not self._items and not self._closed:
                    self._cv.wait()
                if not self._items:
                    return []  # closed and drained
                it = self._items.popleft()
                self._pending -= len(it.prompts)
                if it.start():
                    first = it
            batch, n = [first], len(first.prompts)
            # wait for company at most max_wait_s from now: from the request's arrival when the encoder
            # was idle, from the moment it became free otherwise (clients answered by the previous
            # batch are sending their next requests right now)
            deadline = time.perf_counter() + self.max_wait_s
            while n < self.max_batch:
                if self._items:
                    if n + len(self._items[0].prompts) > self.max_batch:
                        break
                    it = self._items.popleft()
                    self._pending -= len(it.prompts)
                    if it.start():
                        batch.append(it)
                        n += len(it.prompts)
                    continue
                left = deadline - time.perf_counter()
                if left <= 0 or self._closed:
                    break
                self._cv.wait(left)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return
            answers: list[tuple[_Item, Any, BaseException | None]] = []
            try:
                self._screen(batch, answers)
            except BaseException as e:  # never leave a request hanging
                logger.exception("screen batch failed")
                answered = {id(it) for it, _, _ in answers}
                answers += [(it, None, e) for it in batch if id(it) not in answered]
            self._answer(answers)

    @staticmethod
    def _answer(answers: list[tuple[_Item, Any, BaseException | None]]) -> None:
        by_loop: dict[int, tuple[asyncio.AbstractEventLoop, list]] = {}
        for it, result, error in answers:
            if it.loop is None:
                if it.future.done():
                    continue
                if error is None:
                    it.future.set_result(result)
                else:
                    it.future.set_exception(error)
            else:
                by_loop.setdefault(id(it.loop), (it.loop, []))[1].append((it.future, result, error))
        for loop, pairs in by_loop.values():
            try:
                loop.call_soon_threadsafe(_resolve, pairs)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                logger.debug("screen answers for a closed event loop dropped")

    def _screen(self, batch: list[_Item], answers: list) -> None:
        t0 = time.perf_counter()
        flat = [p for it in batch for p in it.prompts]
        report = self.guard.new_report("screen")
        try:
            results = self.guard.screen_prompts(flat, report)
            groups = []
            k = 0
            for it in batch:
                groups.append((it, results[k : k + len(it.prompts)], list(report.errors)))
                k += len(it.prompts)
        except GuardInputError:
            # one request's input is bad: screen each request alone so only that one fails
            groups = []
            for it in batch:
                rep = self.guard.new_report("screen")
                try:
                    groups.append((it, self.guard.screen_prompts(it.prompts, rep), list(rep.errors)))
                except GuardInputError as e:
                    answers.append((it, None, e))
        dt = (time.perf_counter() - t0) * 1000
        self._last_ms_per_prompt = dt / max(1, len(flat))
        if self._on_batch is not None:
            self._on_batch(len(flat), dt / 1000)
        for it, res, errors in groups:
            for i, r in enumerate(res):
                r.index = i
            answers.append((it, ScreenBatch(res, errors, len(flat), dt, (t0 - it.t_submit) * 1000), None))
