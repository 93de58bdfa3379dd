"""The resources themselves: pinned modules, lock-down settings, hubs and consumer groups, Flex config.

checkov cannot see inside registry modules (AVM), so the security-relevant inputs passed to them are
asserted here, from the parsed Bicep, next to the same properties in Terraform.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.infra import infra_iac as iac

pytestmark = pytest.mark.unit

SURFACE = json.loads((iac.REPO / "tests/infra/avm_surface.json").read_text())["modules"]
HUBS = {"xactanalysis": "claimsflow-xact", "claimxperience": "claimsflow-claimx"}


def _bicep_files() -> list[Any]:
    return [iac.REPO / iac.BICEP_MAIN, *sorted((iac.REPO / "infra/app").glob("*.bicep"))]


def _body(config: dict[str, Any]) -> dict[str, Any]:
    """A conditional module (``= if (...)``) nests its body one level down."""
    return dict(config["config"]) if "condition" in config else config


def _registry_modules() -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path in _bicep_files():
        for name, module in iac.parse_bicep(path).get("modules", {}).items():
            if module["type"] == "bicep_registry_alias":
                found.append((f"{path.name}:{name}", module["detail"]["full"], _body(module["config"])))
    return found


def _params(module: str) -> dict[str, Any]:
    doc = iac.parse_bicep(iac.REPO / iac.BICEP_MAIN)
    return dict(_body(doc["modules"][module]["config"])["params"])


def test_every_registry_module_is_a_pinned_avm_release() -> None:
    modules = _registry_modules()
    assert len(modules) >= 8
    for where, ref, _ in modules:
        assert re.fullmatch(r"public:avm/res/[a-z-]+/[a-z-]+:\d+\.\d+\.\d+", ref), (where, ref)


def test_module_inputs_exist_in_the_pinned_module_version() -> None:
    """A renamed or misspelled AVM parameter would only fail at deploy time; catch it here."""
    for where, ref, config in _registry_modules():
        key = ref.removeprefix("public:")
        assert key in SURFACE, f"{where}: {key} not in tests/infra/avm_surface.json; regenerate it"
        surface = SURFACE[key]
        given = set(config["params"])
        assert given <= set(surface["params"]), (where, sorted(given - set(surface["params"])))
        assert set(surface["required"]) <= given, (where, sorted(set(surface["required"]) - given))


def test_module_outputs_used_exist() -> None:
    refs = {"identity", "logAnalytics", "appInsights", "hostStorage", "eventHubNamespace", "keyVault", "plan"}
    main = (iac.REPO / iac.BICEP_MAIN).read_text()
    doc = iac.parse_bicep(iac.REPO / iac.BICEP_MAIN)
    for module in refs:
        key = doc["modules"][module]["detail"]["full"].removeprefix("public:")
        for output in set(re.findall(rf"\b{module}\.outputs\.(\w+)", main)):
            assert output in SURFACE[key]["outputs"], (module, output)


def test_bicep_locks_down_data_services() -> None:
    for account in ("hostStorage", "lakeStorage"):
        params = _params(account)
        assert params["allowSharedKeyAccess"] is False
        assert params["allowBlobPublicAccess"] is False
        assert params["minimumTlsVersion"] == "TLS1_2"
    assert _params("lakeStorage")["enableHierarchicalNamespace"] is True
    assert _params("eventHubNamespace")["disableLocalAuth"] is True
    assert _params("appInsights")["disableLocalAuth"] is True
    vault = _params("keyVault")
    assert vault["enableRbacAuthorization"] is True
    assert vault["enablePurgeProtection"] is True


def test_terraform_locks_down_data_services() -> None:
    doc = iac.parse_terraform()
    for body in iac.tf_resources(doc, "azurerm_storage_account").values():
        assert body["shared_access_key_enabled"] is False
        assert body["allow_nested_items_to_be_public"] is False
        assert iac._unwrap(body["min_tls_version"]) == "TLS1_2"
    assert iac.tf_resources(doc, "azurerm_storage_account")["lake"]["is_hns_enabled"] is True
    assert (
        iac.tf_resources(doc, "azurerm_eventhub_namespace")["main"]["local_authentication_enabled"] is False
    )
    assert (
        iac.tf_resources(doc, "azurerm_application_insights")["main"]["local_authentication_disabled"] is True
    )
    vault = iac.tf_resources(doc, "azurerm_key_vault")["main"]
    assert vault["rbac_authorization_enabled"] is True
    assert vault["purge_protection_enabled"] is True
    providers = {iac._unwrap(k): iac._first(v) for block in doc["provider"] for k, v in block.items()}
    provider = providers["azurerm"]
    assert provider["storage_use_azuread"] is True


def test_event_hubs_and_consumer_groups_match_everywhere() -> None:
    """Bicep, Terraform, the emulator config and the sample name the same hubs and groups."""
    main = (iac.REPO / iac.BICEP_MAIN).read_text()
    for hub, group in HUBS.items():
        assert re.search(rf"name: '{hub}'\s+consumerGroup: '{group}'", main), hub
    tf_locals = iac.tf_locals(iac.parse_terraform())
    assert {iac._unwrap(k): iac._unwrap(v) for k, v in tf_locals["event_hubs"].items()} == HUBS
    emulator = json.loads((iac.REPO / "infra/local/eventhubs-emulator-config.json").read_text())
    entities = emulator["UserConfig"]["NamespaceConfig"][0]["Entities"]
    assert {e["Name"]: [g["Name"] for g in e["ConsumerGroups"]] for e in entities} == {
        hub: [group] for hub, group in HUBS.items()
    }
    sample = iac.sample_settings()
    assert HUBS[sample["XACT_EVENTHUB_NAME"]] == sample["XACT_EVENTHUB_CONSUMER_GROUP"]


def test_flex_app_configuration() -> None:
    """Python version, identity-based deployment storage and always-ready for the durable group."""
    pyproject = (iac.REPO / "pyproject.toml").read_text()
    main = iac.parse_bicep(iac.REPO / iac.BICEP_MAIN)
    python = main["parameters"]["pythonVersion"]["default"]
    assert python == "3.11" and ">=3.11" in pyproject
    site = iac.parse_bicep(iac.REPO / iac.BICEP_APP)["modules"]["site"]["config"]["params"]
    config = site["functionAppConfig"]
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert config["runtime"]["name"] == "python"
    assert config["scaleAndConcurrency"]["alwaysReady"][0]["name"] == "durable"
    assert site["keyVaultAccessIdentityResourceId"] == "identityId"
    app = next(
        iter(iac.tf_resources(iac.parse_terraform(), "azurerm_function_app_flex_consumption").values())
    )
    assert iac._unwrap(app["runtime_name"]) == "python"
    assert iac._unwrap(app["storage_authentication_type"]) == "UserAssignedIdentity"
    assert iac._unwrap(iac._first(app["always_ready"])["name"]) == "durable"
    assert "azurerm_user_assigned_identity.app.id" in str(app["key_vault_reference_identity_id"])
    variables = {iac._unwrap(k): v for block in iac.parse_terraform()["variable"] for k, v in block.items()}
    assert iac._unwrap(str(variables["python_version"]["default"])) == python


def test_azd_files_point_at_the_bicep() -> None:
    azure = yaml.safe_load((iac.REPO / "azure.yaml").read_text())
    assert azure["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert azure["services"]["api"] == {"project": ".", "language": "python", "host": "function"}
    params = json.loads((iac.REPO / "infra/main.parameters.json").read_text())["parameters"]
    declared = iac.parse_bicep(iac.REPO / iac.BICEP_MAIN)["parameters"]
    assert set(params) <= set(declared)
    required = {name for name, p in declared.items() if "default" not in p}
    assert required <= set(params)
    tags = iac.parse_bicep(iac.REPO / iac.BICEP_MAIN)["modules"]["api"]["config"]["params"]["tags"]
    assert "azd-service-name" in json.dumps(tags)
    abbreviations = json.loads((iac.REPO / "infra/abbreviations.json").read_text())
    used = set(re.findall(r"abbrs\.(\w+)", (iac.REPO / iac.BICEP_MAIN).read_text()))
    assert used <= set(abbreviations)


def test_terraform_variables_are_snake_case_and_documented() -> None:
    readme = (iac.REPO / iac.TF_DIR / "README.md").read_text()
    doc = iac.parse_terraform()
    variables = {iac._unwrap(k): v for block in doc["variable"] for k, v in block.items()}
    outputs = {iac._unwrap(k) for block in doc["output"] for k in block}
    for name, body in variables.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert body.get("description"), name
        assert f"`{name}`" in readme, f"variable {name} missing from infra/terraform/README.md"
    for name in outputs:
        assert f"`{name}`" in readme, f"output {name} missing from infra/terraform/README.md"
