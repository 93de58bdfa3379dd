"""Test harness: the real app (``function_app.app``) on the local host, simulator and Azurite."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
from azure.storage.blob import ContainerClient

import function_app
from claimsflow.simulator import AttachmentSimulator
from local_host import LocalHost, VirtualClock
from shared.config import Settings
from shared.lake.flush import FlushStatus
from shared.lake.reader import read_delta
from shared.runtime import Runtime, get_runtime, reset_runtime
from shared.state.deadletter import DeadLetter
from shared.storage import LakeLocation, StorageFactory

S3_HOST = "usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com"
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CLAIMX_TOKEN = "Y2xhaW14OnRlc3Q="


def s3_url(path: str, *, size: int = 4096, signed_at: datetime | None = None, expires: int = 604800) -> str:
    stamp = (signed_at or datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y%m%dT%H%M%SZ")
    return (
        f"https://{S3_HOST}{path}?X-Amz-Date={stamp}&X-Amz-Expires={expires}"
        f"&X-Amz-Signature=sig{abs(hash(path)) % 10**8}&size={size}"
    )


def xact_body(
    trace_id: str, attachments: list[str], *, subtype: str = "documentsReceived", **data: Any
) -> str:
    payload = {"assignmentId": "A1B2C3", "attachments": attachments, **data}
    return json.dumps(
        {
            "type": f"verisk.claims.property.xn.{subtype}",
            "version": 1,
            "utcDateTime": "2026-11-22T15:04:05Z",
            "traceId": trace_id,
            "data": json.dumps(payload),
        }
    )


@dataclass
class Pipeline:
    settings: Settings
    env: dict[str, str]
    host: LocalHost
    simulator: AttachmentSimulator
    clock: VirtualClock

    @property
    def runtime(self) -> Runtime:
        return get_runtime()

    async def deliver(self, bodies: list[str]) -> None:
        await self.host.deliver_event_hub(self.settings.xact_eventhub_name, bodies)

    async def deliver_claimx(self, bodies: list[str]) -> None:
        await self.host.deliver_event_hub(self.settings.claimx_eventhub_name, bodies)

    async def settle(self) -> None:
        """Run every orchestration to its end, then flush staging until it is empty."""
        await self.host.run_until_idle()
        while True:
            results = get_runtime().lakehouse.flush_all()
            failures = [r for r in results if r.status is FlushStatus.FAILED]
            assert not failures, failures
            if all(r.status is FlushStatus.EMPTY for r in results):
                return

    async def restart(self) -> None:
        """A restart: memory (dedup cache, in-flight work) is gone; a new host resumes from storage."""
        await self.host.stop()
        await get_runtime().aclose()
        reset_runtime()
        self.host = LocalHost(
            function_app.app,
            connection_string=self.settings.storage_connection_string or "",
            settings_env=self.env,
            clock=self.clock,
        )
        await self.host.start()

    def table(self, name: str) -> pl.DataFrame:
        root = LakeLocation.parse(self.settings.lake_tables_uri)
        options = StorageFactory(self.settings).delta_storage_options(root)
        return read_delta(root.child(name).uri, options)

    def files(self, uri: str | None = None) -> dict[str, bytes]:
        """Files under ``uri`` (default the XACT attachments root), by path below it."""
        root = LakeLocation.parse(uri or self.settings.xact_attachments_uri)
        container: ContainerClient = (
            StorageFactory(self.settings).lake_blob_service(root).get_container_client(root.container)
        )
        return {
            blob.name.removeprefix(root.path + "/"): container.download_blob(blob.name).readall()
            for blob in container.list_blobs(name_starts_with=root.path + "/")
        }

    def claimx_files(self) -> dict[str, bytes]:
        return self.files(self.settings.claimx_attachments_uri)

    def dead_letters(self) -> list[DeadLetter]:
        return self.runtime.dead_letters.list()

    async def history(self, instance_id: str) -> list[dict[str, Any]]:
        return [dict(event) for event in await self.host.get_history(instance_id)]

    async def close(self) -> None:
        await self.host.stop()
        await get_runtime().aclose()
        await self.simulator.stop()
