"""Every role the code's data access needs is granted, in Bicep and in Terraform, and nothing broader.

Data map (docs/deployment.md): host storage = Functions host + Durable task hub + the app's state
(blob leases/locks, table dedup latch, staging, dead letters); Event Hubs = two triggers; lake =
Delta tables + attachment files; Key Vault = secret references; App Insights = Entra ingestion.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra import infra_iac as iac

pytestmark = pytest.mark.unit

# Built-in role definition ids (Azure docs, "Azure built-in roles").
ROLE_IDS = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "a638d3c7-ab3a-418d-83e6-5f17a39d4fde": "Azure Event Hubs Data Receiver",
    "2b629674-e913-4c01-ae53-ef4638d8f975": "Azure Event Hubs Data Sender",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "0ad04412-c4d5-4796-b79c-f76d14c8d402": "Durable Task Data Contributor",
}

# (target, role) the app identity needs for what the code does.
APP_NEEDS = {
    ("hostStorage", "Storage Blob Data Owner"),
    ("hostStorage", "Storage Queue Data Contributor"),
    ("hostStorage", "Storage Table Data Contributor"),
    ("lakeStorage", "Storage Blob Data Contributor"),
    ("eventHubNamespace", "Azure Event Hubs Data Receiver"),
    ("keyVault", "Key Vault Secrets User"),
    ("appInsights", "Monitoring Metrics Publisher"),
    ("scheduler", "Durable Task Data Contributor"),
}
# A developer running `func start` against the same resources needs the same, plus operating roles.
USER_EXTRA = {
    ("eventHubNamespace", "Azure Event Hubs Data Sender"),
    ("keyVault", "Key Vault Secrets Officer"),
}
USER_NEEDS = {(target, role) for target, role in APP_NEEDS if role != "Key Vault Secrets User"} | USER_EXTRA

TF_TARGETS = {
    "azurerm_storage_account.host": "hostStorage",
    "azurerm_storage_account.lake": "lakeStorage",
    "azurerm_eventhub_namespace.main": "eventHubNamespace",
    "azurerm_key_vault.main": "keyVault",
    "azurerm_application_insights.main": "appInsights",
    "azapi_resource.scheduler": "scheduler",
}


def _bicep_assignments() -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    doc = iac.parse_bicep(iac.REPO / iac.BICEP_RBAC)
    roles_var: dict[str, str] = doc["variables"]["roles"]["value"]
    app: set[tuple[str, str]] = set()
    user: set[tuple[str, str]] = set()
    for name, resource in doc["resources"].items():
        if resource["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        body: dict[str, Any] = resource["config"].get("config", resource["config"])
        role_ref = body["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        role_key = role_ref["operator"]["operands"]["operand_2"]
        role = ROLE_IDS[roles_var[role_key]]
        scope = body["scope"]
        assert scope in doc["resources"] and doc["resources"][scope]["existing"], name
        principal = body["properties"]["principalId"]
        {"appPrincipalId": app, "userPrincipalId": user}[principal].add((scope, role))
    return app, user


def _terraform_assignments() -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    doc = iac.parse_terraform()
    app: set[tuple[str, str]] = set()
    user: set[tuple[str, str]] = set()
    for name, body in iac.tf_resources(doc, "azurerm_role_assignment").items():
        scope = str(body["scope"]).removeprefix("${").removesuffix("}").removesuffix(".id")
        target = TF_TARGETS[scope.removesuffix("[0]")]
        role = iac._unwrap(str(body["role_definition_name"]))
        principal = str(body["principal_id"])
        if "azurerm_user_assigned_identity.app.principal_id" in principal:
            app.add((target, role))
        elif "var.principal_id" in principal:
            user.add((target, role))
        else:
            raise AssertionError(f"{name}: unexpected principal {principal}")
    return app, user


def test_role_ids_in_bicep_are_the_built_in_roles() -> None:
    doc = iac.parse_bicep(iac.REPO / iac.BICEP_RBAC)
    assert set(doc["variables"]["roles"]["value"].values()) <= set(ROLE_IDS)


@pytest.mark.parametrize("reader", [_bicep_assignments, _terraform_assignments], ids=["bicep", "terraform"])
def test_app_identity_has_exactly_the_roles_it_needs(reader: Any) -> None:
    app, _ = reader()
    assert app == APP_NEEDS


@pytest.mark.parametrize("reader", [_bicep_assignments, _terraform_assignments], ids=["bicep", "terraform"])
def test_deploying_user_gets_the_local_development_roles(reader: Any) -> None:
    _, user = reader()
    assert user == USER_NEEDS


def test_rbac_module_receives_every_target_from_main() -> None:
    """rbac.bicep only assigns what main.bicep wires in (lake and scheduler are conditional)."""
    main = iac.parse_bicep(iac.REPO / iac.BICEP_MAIN)
    params = main["modules"]["rbac"]["config"]["params"]
    wired = {"hostStorageName", "lakeStorageName", "eventHubNamespaceName", "keyVaultName"}
    wired |= {"appInsightsName", "durableTaskSchedulerName", "appPrincipalId", "userPrincipalId"}
    assert wired <= set(params)
    assert params["appPrincipalId"]["operator"]["operands"]["operand_1"] == "identity"


def test_identity_principal_id_is_an_output_for_fabric() -> None:
    """OneLake access is granted in Fabric: the principal id must be visible after deploy."""
    main = iac.parse_bicep(iac.REPO / iac.BICEP_MAIN)
    assert "APP_IDENTITY_PRINCIPAL_ID" in main["outputs"]
    outputs = {k for block in iac.parse_terraform().get("output", []) for k in block}
    assert "app_identity_principal_id" in {iac._unwrap(k) for k in outputs}
