"""The process's one bounded pool for blocking I/O (Table, Blob and Delta calls).

Async code hands blocking calls to it with :meth:`IoPool.run`; blocking code fans out over Table
partitions with :meth:`IoPool.map`. Fan-outs nest (ingest runs ``stage_many`` on the pool, which
fans out per partition), and a bounded pool whose workers all wait on queued work would deadlock,
so a waiting caller takes back every item no worker has started yet and runs it itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_IO_WORKERS = 32


class IoPool:
    def __init__(self, max_workers: int = DEFAULT_IO_WORKERS, *, name: str = "io") -> None:
        self.max_workers = max_workers
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix=name)

    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(*args)`` on the pool, awaited without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args))

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(item) for item in items]`` in parallel, in order. Every item runs to its end
        before the first exception (in item order) is raised, so callers can rely on no call
        still being in flight when they clean up."""
        if len(items) <= 1:
            return [fn(item) for item in items]
        futures: list[Future[R]] = [self._executor.submit(fn, item) for item in items]
        outcomes: list[tuple[bool, Any]] = []
        for item, future in zip(items, futures, strict=True):
            if future.cancel():  # no worker took it: run it here rather than wait for one
                try:
                    outcomes.append((True, fn(item)))
                except Exception as exc:
                    outcomes.append((False, exc))
                continue
            error = future.exception()
            outcomes.append((True, future.result()) if error is None else (False, error))
        for succeeded, value in outcomes:
            if not succeeded:
                raise value
        return [value for _, value in outcomes]

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
