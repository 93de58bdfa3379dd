"""Start and stop a private Azurite (Blob, Queue, Table) for tests and for ``claimsflow run``.

The emulator is installed from npm into ``.tools/`` by ``scripts/bootstrap.sh``. Each instance
gets free loopback ports and its own data folder, so several runs never collide.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.storage import EMULATOR_ACCOUNT, EMULATOR_KEY

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO_ROOT / ".tools" / "node_modules" / ".bin" / "azurite"


class AzuriteError(RuntimeError):
    """Azurite could not be found or did not come up."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def connection_string(
    blob_port: int, queue_port: int, table_port: int, account: str = EMULATOR_ACCOUNT
) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={EMULATOR_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{blob_port}/{account};"
        f"QueueEndpoint=http://127.0.0.1:{queue_port}/{account};"
        f"TableEndpoint=http://127.0.0.1:{table_port}/{account};"
    )


@dataclass
class Azurite:
    """A running Azurite process on its own ports; ``stop()`` ends it and removes its data."""

    blob_port: int
    queue_port: int
    table_port: int
    location: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    owns_location: bool = True

    @property
    def connection_string(self) -> str:
        return connection_string(self.blob_port, self.queue_port, self.table_port)

    @classmethod
    def start(
        cls,
        location: Path | None = None,
        extra_accounts: tuple[str, ...] = ("onelake",),
        *,
        prefer_default_ports: bool = False,
    ) -> Azurite:
        binary = Path(os.environ.get("AZURITE_BIN", AZURITE_BIN))
        if not binary.exists():
            found = shutil.which("azurite")
            if not found:
                raise AzuriteError(f"Azurite not found at {binary}; run scripts/bootstrap.sh first")
            binary = Path(found)
        owns = location is None
        location = location or Path(tempfile.mkdtemp(prefix="azurite-"))
        defaults = (10000, 10001, 10002)
        if prefer_default_ports and not any(port_open("127.0.0.1", p) for p in defaults):
            ports = defaults
        else:
            ports = (free_port(), free_port(), free_port())
        accounts = ";".join(f"{name}:{EMULATOR_KEY}" for name in (EMULATOR_ACCOUNT, *extra_accounts))
        env = {**os.environ, "AZURITE_ACCOUNTS": accounts}
        log = open(location / "azurite.log", "wb")  # noqa: SIM115  (kept open for the process)
        process = subprocess.Popen(
            [
                str(binary),
                "--silent",
                "--location",
                str(location),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(ports[0]),
                "--queueHost",
                "127.0.0.1",
                "--queuePort",
                str(ports[1]),
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                str(ports[2]),
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--loose",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        instance = cls(*ports, location=location, process=process, owns_location=owns)
        deadline = time.monotonic() + 30
        while not all(port_open("127.0.0.1", p) for p in ports):
            if process.poll() is not None or time.monotonic() > deadline:
                instance.stop()
                raise AzuriteError(f"Azurite did not start; see {location / 'azurite.log'}")
            time.sleep(0.1)
        return instance

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.owns_location:
            shutil.rmtree(self.location, ignore_errors=True)
