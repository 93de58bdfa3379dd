"""A named run's record in the state account, so that running the same command again resumes it.

What a run was started with (its start time, the seed of generated traffic, a fingerprint of its
events and world) is written before any event is delivered; a later run of the same name reads it
back, makes the same inputs, starts its virtual clock where the record says (the local host then
moves it on to the latest time it stored) and refuses other inputs. The simulated world's fault
counters are kept here too: the outside world does not start over when our process dies.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

RUNS_CONTAINER = "claimsflow-runs"


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_name: str
    started_at: datetime
    seed: int
    inputs_sha256: str

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "started_at": self.started_at.isoformat()})

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        data = json.loads(text)
        return cls(
            data["run_name"],
            datetime.fromisoformat(data["started_at"]),
            int(data["seed"]),
            data["inputs_sha256"],
        )


def new_start() -> tuple[datetime, int]:
    """A first run's start time (whole milliseconds: what JSON and the tables keep) and seed."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000), secrets.randbits(32)


def fingerprint(hubs: Sequence[tuple[str, Sequence[str]]], world: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for hub, bodies in hubs:
        digest.update(f"{hub}\n{len(bodies)}\n".encode())
        for body in bodies:
            digest.update(hashlib.sha256(body.encode("utf-8")).digest())
    digest.update(json.dumps(world, sort_keys=True).encode())
    return digest.hexdigest()


class RunStore:
    """Run records and world state, as blobs in the ``claimsflow-runs`` container."""

    def __init__(self, connection_string: str) -> None:
        self._container = ContainerClient.from_connection_string(connection_string, RUNS_CONTAINER)

    def record(self, run_name: str) -> RunRecord | None:
        text = self._read(f"{run_name}/run.json")
        return None if text is None else RunRecord.from_json(text)

    def save_record(self, record: RunRecord) -> None:
        with suppress(ResourceExistsError):
            self._container.create_container()
        self._container.upload_blob(f"{record.run_name}/run.json", record.to_json(), overwrite=True)

    def fault_usage(self, run_name: str) -> list[int]:
        text = self._read(f"{run_name}/faults.json")
        return [] if text is None else [int(n) for n in json.loads(text)]

    async def save_fault_usage(self, run_name: str, usage: list[int]) -> None:
        """Written before the simulator's answer leaves, so a counted fault is never lost."""
        name, text = f"{run_name}/faults.json", json.dumps(usage)
        await asyncio.to_thread(self._container.upload_blob, name, text, overwrite=True)

    def _read(self, name: str) -> str | None:
        try:
            return self._container.download_blob(name).readall().decode("utf-8")
        except ResourceNotFoundError:
            return None
