"""Readers for the deployment files and the settings-parity rules shared by the tests in this folder.

Everything is computed from the files of a repository root passed in, so the same functions run on
the real tree and on a modified copy (the negative parity test).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
from pycep import BicepParser

REPO = Path(__file__).resolve().parents[2]

BICEP_APP = Path("infra/app/api.bicep")
BICEP_RBAC = Path("infra/app/rbac.bicep")
BICEP_MAIN = Path("infra/main.bicep")
TF_DIR = Path("infra/terraform")
SAMPLE = Path("local.settings.sample.json")

# The connection every Functions app has (host storage); binding connections are found in the code.
HOST_STORAGE = "AzureWebJobsStorage"
# Settings that exist only for local runs: they must never reach Azure.
LOCAL_ONLY = frozenset({"SIMULATION_MODE", "SIMULATOR_URL"})
# Alias of AzureWebJobsStorage__clientId read by azure-identity; identity-only like its partner.
IDENTITY_ONLY_EXTRA = frozenset({"AZURE_CLIENT_ID"})
# Host-level settings: local runs need the worker runtime; Flex Consumption rejects it and
# FUNCTIONS_EXTENSION_VERSION (the runtime comes from functionAppConfig).
LOCAL_HOST_SETTINGS = frozenset({"FUNCTIONS_WORKER_RUNTIME"})
AZURE_HOST_SETTINGS = frozenset(
    {
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",
    }
)
FORBIDDEN_IN_FLEX = frozenset(
    {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"}
)
# Values that differ by environment on purpose; every other literal must agree everywhere.
ENVIRONMENT_SPECIFIC = frozenset({"ENVIRONMENT", "LAKE_TABLES_URI", "XACT_ATTACHMENTS_URI"})
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|API_KEY|CLIENT_SECRET)$")
KEY_MATERIAL = re.compile(r"AccountKey=|SharedAccessKey=|SharedAccessSignature=|sig=", re.IGNORECASE)


def identity_forms(prefix: str) -> frozenset[str]:
    """The identity-based settings Azure needs for one connection prefix (user-assigned identity)."""
    common = {f"{prefix}__credential", f"{prefix}__clientId"}
    if prefix == HOST_STORAGE:
        return frozenset(common | {f"{prefix}__{s}ServiceUri" for s in ("blob", "queue", "table")})
    return frozenset(common | {f"{prefix}__fullyQualifiedNamespace"})


# ---- what the code reads ---------------------------------------------------------------------

_CODE_PROBE = """
import json, sys
from pydantic import SecretStr
from shared.config import Settings, setting_names
secrets = sorted(
    str(f.alias) for f in Settings.model_fields.values() if f.alias and "SecretStr" in repr(f.annotation)
)
print(json.dumps({"names": sorted(setting_names()), "secrets": secrets}))
"""


@dataclass(frozen=True)
class CodeSettings:
    """Every setting name the code reads, from shared.config and the binding expressions."""

    names: frozenset[str]
    connections: frozenset[str]
    secrets: frozenset[str]
    binding_refs: frozenset[str] = field(default_factory=frozenset)

    @property
    def identity_only(self) -> frozenset[str]:
        forms = {n for n in self.names for p in self.connections if n.startswith(f"{p}__")}
        return frozenset(forms | (IDENTITY_ONLY_EXTRA & self.names))

    def expected_local(self) -> frozenset[str]:
        """Keys local.settings.sample.json must have: connection strings, no identity forms."""
        return frozenset((self.names - self.identity_only) | self.connections | LOCAL_HOST_SETTINGS)

    def expected_azure(self) -> frozenset[str]:
        """App settings Bicep and Terraform must have: identity forms, no connection strings."""
        identity = set().union(*(identity_forms(p) for p in self.connections))
        return frozenset((self.names - self.connections - LOCAL_ONLY) | identity | AZURE_HOST_SETTINGS)


def _code_files(root: Path) -> Iterator[Path]:
    yield from sorted((root / "functions").glob("*.py"))
    for name in ("function_app.py", "host.json"):
        if (root / name).exists():
            yield root / name


def binding_references(root: Path) -> tuple[frozenset[str], frozenset[str]]:
    """``%NAME%`` expressions and ``connection="X"`` prefixes used by bindings and host.json."""
    refs: set[str] = set()
    connections: set[str] = set()
    for path in _code_files(root):
        text = path.read_text()
        refs.update(re.findall(r"%([A-Za-z_][A-Za-z0-9_]*)%", text))
        connections.update(re.findall(r"""\bconnection\s*=\s*["']([A-Za-z_][A-Za-z0-9_]*)["']""", text))
        connections.update(re.findall(r'"connection(?:StringName)?"\s*:\s*"([A-Za-z_][A-Za-z0-9_]*)"', text))
    return frozenset(refs), frozenset(connections)


def code_settings(root: Path = REPO) -> CodeSettings:
    """Ask the code at ``root`` (in a subprocess, so a modified copy is read, not the imported one)."""
    probe = subprocess.run(
        [sys.executable, "-c", _CODE_PROBE], cwd=root, capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        raise RuntimeError(f"reading shared.config failed:\n{probe.stderr}")
    data = json.loads(probe.stdout)
    refs, connections = binding_references(root)
    names = frozenset(data["names"]) | refs
    secrets = frozenset(data["secrets"]) | {n for n in names if SECRET_NAME.search(n)}
    return CodeSettings(
        names=names,
        connections=connections | {HOST_STORAGE},
        secrets=secrets,
        binding_refs=refs,
    )


# ---- Bicep --------------------------------------------------------------------------------------


@cache
def _parser() -> BicepParser:
    return BicepParser()


def parse_bicep(path: Path) -> dict[str, Any]:
    return dict(_parser().parse(text=path.read_text()))


def _unquote(key: str) -> str:
    return key[1:-1] if key.startswith("'") and key.endswith("'") else key


def bicep_object_keys(value: Any) -> set[str]:
    if not isinstance(value, dict):
        raise AssertionError(f"expected an object literal, got {value!r}")
    return {_unquote(k) for k in value}


def bicep_literal_values(path: Path, keys: Iterable[str]) -> dict[str, str]:
    """``KEY: 'literal'`` values (no interpolation) straight from the source text."""
    text = path.read_text()
    found: dict[str, str] = {}
    for key in keys:
        match = re.search(rf"^\s*'?{re.escape(key)}'?:\s*'([^'$]*)'\s*$", text, re.MULTILINE)
        if match:
            found[key] = match.group(1)
    return found


@dataclass(frozen=True)
class AppSettings:
    """App settings as one IaC tool declares them: names and raw values (expressions as text)."""

    values: dict[str, str]
    literals: dict[str, str]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.values)


def bicep_app_settings(root: Path = REPO) -> AppSettings:
    """The ``appSettings`` object in infra/app/api.bicep, and that it is what the site receives."""
    path = root / BICEP_APP
    doc = parse_bicep(path)
    settings = doc["variables"]["appSettings"]["value"]
    site = doc["modules"]["site"]["config"]["params"]
    configs = [c for c in site["configs"] if c.get("name") == "appsettings"]
    if len(configs) != 1 or "appSettings" not in json.dumps(configs[0]["properties"]):
        raise AssertionError("the site's appsettings config does not use var appSettings")
    values = {_unquote(k): json.dumps(v) if not isinstance(v, str) else v for k, v in settings.items()}
    return AppSettings(values=values, literals=bicep_literal_values(path, values))


# ---- Terraform ----------------------------------------------------------------------------------


def parse_terraform(root: Path = REPO) -> dict[str, list[Any]]:
    """All ``.tf`` files of infra/terraform merged block-type by block-type."""
    merged: dict[str, list[Any]] = {}
    for path in sorted((root / TF_DIR).glob("*.tf")):
        with path.open() as handle:
            doc = hcl2.load(handle)
        for block_type, blocks in doc.items():
            merged.setdefault(block_type, []).extend(blocks)
    return merged


def _unwrap(value: str) -> str:
    """python-hcl2 keeps expressions as ``${...}``; quoted literals keep their quotes in v8."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def tf_locals(doc: dict[str, list[Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in doc.get("locals", []):
        merged.update(block)
    return merged


def tf_resources(doc: dict[str, list[Any]], rtype: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in doc.get("resource", []):
        for type_name, instances in block.items():
            if _unwrap(type_name) == rtype:
                for name, body in instances.items():
                    found[_unwrap(name)] = body
    return found


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def terraform_app_settings(root: Path = REPO) -> AppSettings:
    """``local.app_settings`` plus what the provider derives from site_config (App Insights)."""
    doc = parse_terraform(root)
    locals_ = tf_locals(doc)
    apps = tf_resources(doc, "azurerm_function_app_flex_consumption")
    if len(apps) != 1:
        raise AssertionError(f"expected one flex function app, found {sorted(apps)}")
    app = next(iter(apps.values()))
    wiring = str(app.get("app_settings"))
    if "local.app_settings" not in wiring:
        raise AssertionError(f"app_settings of the function app does not use local.app_settings: {wiring}")
    values = {_unwrap(k): _unwrap(str(v)) for k, v in locals_["app_settings"].items()}
    site_config = _first(app.get("site_config", [{}]))
    if site_config.get("application_insights_connection_string"):
        values["APPLICATIONINSIGHTS_CONNECTION_STRING"] = _unwrap(
            str(site_config["application_insights_connection_string"])
        )
    literals = {k: v for k, v in values.items() if "${" not in v}
    return AppSettings(values=values, literals=literals)


# ---- the sample ---------------------------------------------------------------------------------


def sample_settings(root: Path = REPO) -> dict[str, str]:
    data = json.loads((root / SAMPLE).read_text())
    values = data["Values"]
    if not all(isinstance(v, str) for v in values.values()):
        raise AssertionError("local.settings.json values must all be strings")
    return dict(values)


# ---- parity ----------------------------------------------------------------------------------------


def _diff(where: str, expected: frozenset[str], actual: frozenset[str]) -> list[str]:
    problems = [f"{where}: missing {name}" for name in sorted(expected - actual)]
    problems += [f"{where}: {name} is not read by the code" for name in sorted(actual - expected)]
    return problems


def azure_problems(
    where: str, code: CodeSettings, settings: AppSettings, *, host_storage_blanked: bool = False
) -> list[str]:
    """Names, identity forms, secrets and Azure-only rules for one IaC declaration.

    ``host_storage_blanked``: the declaration must set ``AzureWebJobsStorage`` to "" (azurerm
    injects a connection string with an empty key otherwise, which the host prefers to the
    identity-based settings); that blank entry is then not a connection string in Azure.
    """
    problems: list[str] = []
    names = settings.names
    if host_storage_blanked:
        if settings.literals.get(HOST_STORAGE) == "":
            names = names - {HOST_STORAGE}
        elif HOST_STORAGE not in settings.values:
            problems.append(
                f'{where}: {HOST_STORAGE} must be declared "" (the provider injects a keyless one)'
            )
    problems += _diff(where, code.expected_azure(), names)
    for name in sorted(names & (code.connections | FORBIDDEN_IN_FLEX | LOCAL_ONLY)):
        problems.append(f"{where}: {name} must not be set in Azure")
    for name, value in settings.values.items():
        if KEY_MATERIAL.search(value):
            problems.append(f"{where}: {name} carries key material")
        if name.endswith("__credential") and settings.literals.get(name) != "managedidentity":
            problems.append(f"{where}: {name} must be 'managedidentity'")
    for name in sorted(code.secrets & settings.names):
        value = settings.values[name]
        if "@Microsoft.KeyVault(" not in value and "ref_prefix" not in value and "RefPrefix" not in value:
            problems.append(f"{where}: secret {name} must be a Key Vault reference")
    if settings.literals.get("ENVIRONMENT") != "production":
        problems.append(f"{where}: ENVIRONMENT must be 'production'")
    return problems


def parity_problems(root: Path = REPO) -> list[str]:
    """Every disagreement between the code, the sample file, Bicep and Terraform (empty when in sync)."""
    code = code_settings(root)
    sample = sample_settings(root)
    problems = _diff(str(SAMPLE), code.expected_local(), frozenset(sample))
    for prefix in sorted(code.connections):
        if not sample.get(prefix):
            problems.append(f"{SAMPLE}: {prefix} needs a local connection string")
    for name in sorted(code.secrets & frozenset(sample)):
        if sample[name]:
            problems.append(f"{SAMPLE}: secret {name} must be empty in the sample")
    bicep = bicep_app_settings(root)
    terraform = terraform_app_settings(root)
    problems += azure_problems(str(BICEP_APP), code, bicep)
    problems += azure_problems(str(TF_DIR / "app.tf"), code, terraform, host_storage_blanked=True)
    # Literal values agree between the three files unless they are environment-specific.
    for name in sorted(
        (code.names - ENVIRONMENT_SPECIFIC) & bicep.literals.keys() & terraform.literals.keys()
    ):
        trio = {bicep.literals[name], terraform.literals[name], sample.get(name, bicep.literals[name])}
        if len(trio) > 1:
            problems.append(f"{name}: values differ between sample, Bicep and Terraform: {sorted(trio)}")
    return problems


def bicep_expression(value: Any) -> str:
    """A parsed Bicep expression as compact source-like text: ``a.b.c``, ``m[k.x]``, ``f(a, b)``.

    Enough to compare wiring (which parameter or property feeds which input) without a compiler.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "operator" in value:
        operator = value["operator"]
        operands = [bicep_expression(v) for v in operator["operands"].values()]
        if operator["type"] == "property_accessor":
            return ".".join(operands)
        if operator["type"] == "index_accessor":
            return f"{operands[0]}[{operands[1]}]"
        return f"{operator['type']}({', '.join(operands)})"
    if isinstance(value, dict) and "function" in value:
        function = value["function"]
        args = [bicep_expression(v) for v in (function.get("parameters") or {}).values() if v is not None]
        return f"{function['type']}({', '.join(args)})"
    return json.dumps(value, sort_keys=True)


def tf_expression(value: Any) -> str:
    """A Terraform value as python-hcl2 keeps it, without the ``${...}`` or quote wrapping."""
    text = _unwrap(str(value))
    return text[2:-1] if text.startswith("${") and text.endswith("}") else text
