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

# Arguments of azurerm_function_app_flex_consumption, from the provider's resource schema
# (Arguments() in internal/services/appservice/function_app_flex_consumption_resource.go), plus
# Terraform's meta-arguments. `terraform validate` needs the provider binary; this is its check
# for the one resource whose arguments were wrong.
FLEX_APP_ARGUMENTS = {
    "name", "resource_group_name", "location", "service_plan_id", "storage_container_type",
    "storage_container_endpoint", "storage_authentication_type", "storage_access_key",
    "storage_user_assigned_identity_id", "runtime_name", "runtime_version", "instance_memory_in_mb",
    "maximum_instance_count", "http_concurrency", "always_ready", "site_config", "site_update_strategy",
    "sticky_settings", "app_settings", "auth_settings", "auth_settings_v2", "client_certificate_enabled",
    "client_certificate_mode", "client_certificate_exclusion_paths", "connection_string", "enabled",
    "identity", "public_network_access_enabled", "https_only",
    "webdeploy_publish_basic_authentication_enabled", "virtual_network_subnet_id", "zip_deploy_file",
    "vnet_application_traffic_enabled", "tags",
}  # fmt: skip
TF_META_ARGUMENTS = {"depends_on", "count", "for_each", "provider", "lifecycle"}
HCL2_KEYS = {"__is_block__", "__comments__", "__inline_comments__"}

# The first Azure/azapi release whose embedded schemas (which azapi validates bodies against)
# know each type@api-version the Terraform uses, read from the provider's release tags.
AZAPI_FIRST_RELEASE = {
    "Microsoft.DurableTask/schedulers@2025-11-01": (2, 8),
    "Microsoft.DurableTask/schedulers/taskHubs@2025-11-01": (2, 8),
    "Microsoft.Web/sites@2024-11-01": (2, 5),
}


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


def _flex_app() -> dict[str, Any]:
    return next(
        iter(iac.tf_resources(iac.parse_terraform(), "azurerm_function_app_flex_consumption").values())
    )


def test_flex_app_uses_only_arguments_the_provider_has() -> None:
    """key_vault_reference_identity_id is not an argument of the flex resource in any version."""
    arguments = set(_flex_app()) - HCL2_KEYS - TF_META_ARGUMENTS
    assert arguments <= FLEX_APP_ARGUMENTS, sorted(arguments - FLEX_APP_ARGUMENTS)
    assert "key_vault_reference_identity_id" not in (iac.REPO / iac.TF_DIR / "app.tf").read_text()


def test_key_vault_references_resolve_with_the_app_identity_in_terraform() -> None:
    """Set on the site through azapi, the way the Bicep sets keyVaultAccessIdentityResourceId."""
    updates = iac.tf_resources(iac.parse_terraform(), "azapi_update_resource")
    matching = [
        body
        for body in updates.values()
        if iac.tf_expression(body["type"]).startswith("Microsoft.Web/sites@")
        and iac.tf_expression(body["resource_id"]) == "azurerm_function_app_flex_consumption.app.id"
    ]
    assert len(matching) == 1
    identity = matching[0]["body"]["properties"]["keyVaultReferenceIdentity"]
    assert iac.tf_expression(identity) == "azurerm_user_assigned_identity.app.id"
    site = iac.parse_bicep(iac.REPO / iac.BICEP_APP)["modules"]["site"]["config"]["params"]
    assert site["keyVaultAccessIdentityResourceId"] == "identityId"


def _azapi_floor() -> tuple[int, ...]:
    doc = iac.parse_terraform()
    constraint = iac._unwrap(doc["terraform"][0]["required_providers"][0]["azapi"]["version"])
    match = re.search(r">=\s*(\d+(?:\.\d+)*)", constraint)
    assert match, constraint
    return tuple(int(part) for part in match.group(1).split("."))


def test_azapi_floor_knows_every_api_version_used() -> None:
    doc = iac.parse_terraform()
    used = {
        iac.tf_expression(body["type"])
        for rtype in ("azapi_resource", "azapi_update_resource")
        for body in iac.tf_resources(doc, rtype).values()
    }
    assert used <= set(AZAPI_FIRST_RELEASE), (
        f"check the first azapi release for {sorted(used - set(AZAPI_FIRST_RELEASE))}"
    )
    assert _azapi_floor() >= max(AZAPI_FIRST_RELEASE[t] for t in used)
    bicep = iac.parse_bicep(iac.REPO / "infra/app/durable-task-scheduler.bicep")["resources"]
    assert f"{bicep['scheduler']['type']}@{bicep['scheduler']['api_version']}" in used


def test_dedicated_scheduler_gets_a_capacity_in_both_flavours() -> None:
    module = iac.parse_bicep(iac.REPO / "infra/app/durable-task-scheduler.bicep")
    sku = iac.bicep_expression(module["resources"]["scheduler"]["config"]["properties"]["sku"])
    assert sku == "conditional(equals(skuName, Dedicated), dedicatedSku, consumptionSku)"
    assert module["variables"]["dedicatedSku"]["value"] == {"name": "skuName", "capacity": "capacity"}
    assert module["variables"]["consumptionSku"]["value"] == {"name": "skuName"}
    bounds = {d["type"]: d["argument"] for d in module["parameters"]["capacity"]["decorators"]}
    assert (bounds["min_value"], bounds["max_value"]) == (1, 3)
    main = iac.parse_bicep(iac.REPO / iac.BICEP_MAIN)
    assert _body(main["modules"]["durableTaskScheduler"]["config"])["params"]["capacity"] == (
        "durableTaskSchedulerCapacity"
    )
    doc = iac.parse_terraform()
    body = iac.tf_resources(doc, "azapi_resource")["scheduler"]["body"]["properties"]
    assert re.fullmatch(
        r'merge\(\{name = var\.durable_task_scheduler_sku\}, var\.durable_task_scheduler_sku == "Dedicated"'
        r" \? \{capacity = var\.durable_task_scheduler_capacity\} : \{\}\)",
        iac.tf_expression(body["sku"]),
    )
    variables = {iac._unwrap(k): v for block in doc["variable"] for k, v in block.items()}
    condition = variables["durable_task_scheduler_capacity"]["validation"][0]["condition"]
    assert ">= 1" in condition and "<= 3" in condition
    assert (
        variables["durable_task_scheduler_capacity"]["default"]
        == main["parameters"]["durableTaskSchedulerCapacity"]["default"]
    )


def test_event_hub_platform_metrics_reach_log_analytics() -> None:
    """The lag alert reads IncomingMessages/OutgoingMessages from AzureMetrics."""
    settings = _params("eventHubNamespace")["diagnosticSettings"]
    assert len(settings) == 1
    assert iac.bicep_expression(settings[0]["workspaceResourceId"]) == "logAnalytics.outputs.resourceId"
    assert settings[0]["metricCategories"] == [{"category": "AllMetrics"}]
    terraform = iac.tf_resources(iac.parse_terraform(), "azurerm_monitor_diagnostic_setting")
    assert len(terraform) == 1
    (setting,) = terraform.values()
    assert iac.tf_expression(setting["target_resource_id"]) == "azurerm_eventhub_namespace.main.id"
    assert (
        iac.tf_expression(setting["log_analytics_workspace_id"]) == "azurerm_log_analytics_workspace.main.id"
    )
    assert [iac.tf_expression(m["category"]) for m in setting["enabled_metric"]] == ["AllMetrics"]
