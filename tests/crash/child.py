"""The crash campaign's child: ``claimsflow`` in a process that SIGKILLs itself at a named point.

``python -m tests.crash.child --kill-at POINT[:N] -- run ...`` runs the real command line and
kills the process the N-th time (default: the first) it passes POINT; ``--count-passes FILE``
instead counts how often each point is passed and writes the counts when the run ends. The
application's points are armed here by wrapping the methods they sit in, so no test hook lives in
the app's code; the local host's points are its own (``LOCAL_HOST_KILL_AT``). A SIGKILL is as
sudden as a power cut for this process: nothing is flushed, closed or released.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from local_host import killpoints
from local_host.killpoints import KILL_AT_VARIABLE
from local_host.killpoints import POINTS as HOST_POINTS


def _app_points() -> dict[str, tuple[type[Any], str, str, str]]:
    """point -> (class, method, "before" or "after" the call, what is true when it fires)."""
    from deltalake import DeltaTable

    from shared.lake.staging import StagingTable
    from shared.state.dedup import DedupLatch
    from shared.transfer.stores import BlobAttachmentStore

    return {
        "ingest-claimed": (
            DedupLatch,
            "claim_many",
            "after",
            "ingest took its dedup latches; no row staged, no orchestration started",
        ),
        "block-staged": (
            BlobAttachmentStore,
            "stage",
            "after",
            "one block of an attachment is staged, the others are not (in the middle of an upload)",
        ),
        "transfer-committed": (
            BlobAttachmentStore,
            "commit",
            "after",
            "an attachment's blocks are committed; its row is not staged",
        ),
        "file-put": (
            BlobAttachmentStore,
            "put",
            "after",
            "a small attachment is written in one request; its row is not staged",
        ),
        "delta-committed": (
            StagingTable,
            "delete_if_unchanged",
            "before",
            "a flush committed to Delta; the staged rows are not deleted",
        ),
        "compaction-optimized": (
            DeltaTable,
            "vacuum",
            "before",
            "compaction rewrote a table's files; vacuum and checkpoint did not run",
        ),
    }


APP_POINT_NAMES = frozenset(
    {
        "ingest-claimed",
        "block-staged",
        "transfer-committed",
        "file-put",
        "delta-committed",
        "compaction-optimized",
    }
)
ALL_POINTS = APP_POINT_NAMES | HOST_POINTS


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _wrap(owner: type[Any], name: str, when: str, on_pass: Callable[[], None]) -> None:
    original = getattr(owner, name)
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            if when == "before":
                on_pass()
            result = await original(*args, **kwargs)
            if when == "after":
                on_pass()
            return result

        setattr(owner, name, async_wrapper)
        return

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if when == "before":
            on_pass()
        result = original(*args, **kwargs)
        if when == "after":
            on_pass()
        return result

    setattr(owner, name, wrapper)


def arm(point: str, count: int) -> None:
    """Make the ``count``-th pass of ``point`` kill this process."""
    if point in HOST_POINTS:
        os.environ[KILL_AT_VARIABLE] = f"{point}:{count}"
        return
    owner, name, when, _ = _app_points()[point]
    passes = [0]

    def reached() -> None:
        passes[0] += 1
        if passes[0] == count:
            _die()

    _wrap(owner, name, when, reached)


def count_passes(path: Path) -> None:
    """Count how often the run passes each point, and write the counts to ``path`` when it ends
    (an uninterrupted run: the campaign picks kill passes that exist)."""
    counts: Counter[str] = Counter()
    for point, (owner, name, when, _) in _app_points().items():
        _wrap(owner, name, when, functools.partial(counts.update, [point]))
    counted = killpoints.passed

    def passed(point: str) -> None:
        counts[point] += 1
        counted(point)

    killpoints.passed = passed
    atexit.register(lambda: path.write_text(json.dumps(dict(counts))))


def parse_point(spec: str) -> tuple[str, int]:
    point, _, count = spec.partition(":")
    if point not in ALL_POINTS:
        raise SystemExit(f"unknown kill point {point!r}; known: {', '.join(sorted(ALL_POINTS))}")
    return point, int(count or 1)


def main(argv: list[str], cli: Callable[[], Any] | None = None) -> None:
    args = list(argv)
    if args[:1] == ["--kill-at"]:
        arm(*parse_point(args[1]))
        args = args[2:]
    elif args[:1] == ["--count-passes"]:
        count_passes(Path(args[1]))
        args = args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    sys.argv = ["claimsflow", *args]
    if cli is None:
        from claimsflow.cli import main as cli
    cli()


if __name__ == "__main__":
    main(sys.argv[1:])
