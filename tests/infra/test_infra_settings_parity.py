"""Settings parity: the code, local.settings.sample.json, Bicep and Terraform name the same settings.

The code's set is computed live (shared.config + binding expressions), so a setting added by any
issue shows up here until the sample and both IaC flavours carry it, in the right form.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.infra import infra_iac as iac

pytestmark = pytest.mark.unit


def _copy_repo(tmp_path: Path) -> Path:
    """The files parity reads, copied so a test can change them."""
    root = tmp_path / "repo"
    for folder in ("shared", "functions", "infra"):
        shutil.copytree(iac.REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("function_app.py", "host.json", "local.settings.sample.json"):
        if (iac.REPO / name).exists():
            shutil.copy2(iac.REPO / name, root / name)
    return root


def _add_config_field(root: Path, line: str) -> None:
    """Append a field to the copied Settings class (right after its first field)."""
    path = root / "shared" / "config.py"
    text = path.read_text()
    anchor = '    environment: str = Field("development", alias="ENVIRONMENT")\n'
    assert anchor in text, "Settings no longer starts with ENVIRONMENT; update this test's anchor"
    path.write_text(text.replace(anchor, anchor + line + "\n", 1))


def test_parity_holds_for_the_repository() -> None:
    assert iac.parity_problems() == []


def test_code_settings_include_bindings_and_connections() -> None:
    """The live set covers what bindings read, not only shared.config."""
    code = iac.code_settings()
    assert {"AzureWebJobsStorage", "EventHubConnection"} <= code.connections
    assert {"XACT_EVENTHUB_NAME", "XACT_EVENTHUB_CONSUMER_GROUP", "TASKHUB_NAME"} <= code.binding_refs
    assert code.binding_refs <= code.names


def test_adding_a_setting_to_the_code_only_fails_parity(tmp_path: Path) -> None:
    root = _copy_repo(tmp_path)
    assert iac.parity_problems(root) == []
    _add_config_field(root, '    parity_probe: str = Field("x", alias="PARITY_PROBE_SETTING")')
    problems = iac.parity_problems(root)
    assert "local.settings.sample.json: missing PARITY_PROBE_SETTING" in problems
    assert "infra/app/api.bicep: missing PARITY_PROBE_SETTING" in problems
    assert "infra/terraform/app.tf: missing PARITY_PROBE_SETTING" in problems


def test_a_new_binding_expression_fails_parity(tmp_path: Path) -> None:
    root = _copy_repo(tmp_path)
    (root / "functions" / "parity_probe.py").write_text('SCHEDULE = "%PARITY_PROBE_SCHEDULE%"\n')
    problems = iac.parity_problems(root)
    assert "local.settings.sample.json: missing PARITY_PROBE_SCHEDULE" in problems
    assert "infra/app/api.bicep: missing PARITY_PROBE_SCHEDULE" in problems
    assert "infra/terraform/app.tf: missing PARITY_PROBE_SCHEDULE" in problems


def test_a_new_connection_needs_both_forms(tmp_path: Path) -> None:
    """A new binding connection: a connection string locally, identity settings in Azure."""
    root = _copy_repo(tmp_path)
    (root / "functions" / "parity_probe.py").write_text(
        'CONNECTION = dict(connection="ProbeHubConnection")\n'
    )
    problems = iac.parity_problems(root)
    assert "local.settings.sample.json: missing ProbeHubConnection" in problems
    for where in ("infra/app/api.bicep", "infra/terraform/app.tf"):
        for suffix in ("fullyQualifiedNamespace", "credential", "clientId"):
            assert f"{where}: missing ProbeHubConnection__{suffix}" in problems


def test_a_connection_string_in_azure_is_refused(tmp_path: Path) -> None:
    root = _copy_repo(tmp_path)
    api = root / "infra" / "app" / "api.bicep"
    text = api.read_text()
    injected = "  EventHubConnection: 'Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=abc'\n"
    api.write_text(text.replace("var appSettings = {\n", "var appSettings = {\n" + injected, 1))
    problems = iac.parity_problems(root)
    assert "infra/app/api.bicep: EventHubConnection must not be set in Azure" in problems
    assert "infra/app/api.bicep: EventHubConnection carries key material" in problems


def test_a_secret_must_be_a_key_vault_reference(tmp_path: Path) -> None:
    """Secrets (SecretStr fields) reach Azure only as Key Vault references, and are empty locally."""
    root = _copy_repo(tmp_path)
    _add_config_field(root, '    probe_token: SecretStr | None = Field(None, alias="PROBE_API_TOKEN")')
    config = root / "shared" / "config.py"
    config.write_text(
        config.read_text().replace("from pydantic import ", "from pydantic import SecretStr, ", 1)
    )
    sample_path = root / "local.settings.sample.json"
    sample = json.loads(sample_path.read_text())
    sample["Values"]["PROBE_API_TOKEN"] = "not-empty"
    sample_path.write_text(json.dumps(sample))
    api = root / "infra" / "app" / "api.bicep"
    api.write_text(
        api.read_text().replace(
            "var appSettings = {\n", "var appSettings = {\n  PROBE_API_TOKEN: 'plain'\n", 1
        )
    )
    app_tf = root / "infra" / "terraform" / "app.tf"
    app_tf.write_text(
        app_tf.read_text().replace(
            "  app_settings = {\n",
            '  app_settings = {\n    PROBE_API_TOKEN = "${local.key_vault_ref_prefix}probe-api-token)"\n',
            1,
        )
    )
    problems = iac.parity_problems(root)
    assert "infra/app/api.bicep: secret PROBE_API_TOKEN must be a Key Vault reference" in problems
    assert "local.settings.sample.json: secret PROBE_API_TOKEN must be empty in the sample" in problems
    assert not [p for p in problems if p.startswith("infra/terraform/app.tf") and "PROBE_API_TOKEN" in p]


def _terraform_app_tf(root: Path) -> Path:
    return root / "infra" / "terraform" / "app.tf"


def test_terraform_declares_the_host_storage_connection_blank() -> None:
    """azurerm injects AzureWebJobsStorage with an empty key unless the app declares it itself."""
    assert iac.terraform_app_settings().literals["AzureWebJobsStorage"] == ""
    assert "AzureWebJobsStorage" not in iac.bicep_app_settings().names


def test_terraform_without_the_blank_host_storage_fails_parity(tmp_path: Path) -> None:
    root = _copy_repo(tmp_path)
    app_tf = _terraform_app_tf(root)
    text = app_tf.read_text()
    assert '    AzureWebJobsStorage = ""\n' in text
    app_tf.write_text(text.replace('    AzureWebJobsStorage = ""\n', "", 1))
    problems = iac.parity_problems(root)
    assert problems == [
        'infra/terraform/app.tf: AzureWebJobsStorage must be declared "" (the provider injects a keyless one)'
    ]


def test_a_host_storage_connection_string_in_terraform_is_refused(tmp_path: Path) -> None:
    root = _copy_repo(tmp_path)
    app_tf = _terraform_app_tf(root)
    keyed = '    AzureWebJobsStorage = "DefaultEndpointsProtocol=https;AccountName=st;AccountKey=abc"\n'
    app_tf.write_text(app_tf.read_text().replace('    AzureWebJobsStorage = ""\n', keyed, 1))
    problems = iac.parity_problems(root)
    assert "infra/terraform/app.tf: AzureWebJobsStorage must not be set in Azure" in problems
    assert "infra/terraform/app.tf: AzureWebJobsStorage carries key material" in problems


def test_a_blank_host_storage_in_bicep_is_refused(tmp_path: Path) -> None:
    """Only the Terraform provider needs the blank; Bicep sets identity-based settings alone."""
    root = _copy_repo(tmp_path)
    api = root / "infra" / "app" / "api.bicep"
    api.write_text(
        api.read_text().replace(
            "var appSettings = {\n", "var appSettings = {\n  AzureWebJobsStorage: ''\n", 1
        )
    )
    assert "infra/app/api.bicep: AzureWebJobsStorage must not be set in Azure" in iac.parity_problems(root)


@pytest.mark.parametrize(
    "reader", [iac.bicep_app_settings, iac.terraform_app_settings], ids=["bicep", "terraform"]
)
def test_azure_settings_are_production_and_identity_based(reader: object) -> None:
    settings = reader()  # type: ignore[operator]
    assert settings.literals["ENVIRONMENT"] == "production"
    assert not settings.names & {"SIMULATION_MODE", "SIMULATOR_URL", "EventHubConnection"}
    assert settings.literals.get("AzureWebJobsStorage", "") == ""
    assert not settings.names & iac.FORBIDDEN_IN_FLEX
    for prefix in ("AzureWebJobsStorage", "EventHubConnection"):
        assert settings.literals[f"{prefix}__credential"] == "managedidentity"
    assert "Authorization=AAD" in settings.values["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]


def test_sample_loads_into_the_settings_object() -> None:
    """The sample is a working local configuration, not just a list of names."""
    from shared.config import Settings

    values = iac.sample_settings()
    settings = Settings(**values)
    assert not settings.is_production
    assert settings.simulation_mode is False
    assert settings.storage_connection_string == "UseDevelopmentStorage=true"
    assert "UseDevelopmentEmulator=true" in values["EventHubConnection"]


def test_sample_and_iac_literals_agree() -> None:
    """Behaviour settings (schedules, limits) are the same locally and in both IaC flavours."""
    sample = iac.sample_settings()
    bicep = iac.bicep_app_settings().literals
    terraform = iac.terraform_app_settings().literals
    shared = (set(bicep) & set(terraform) & set(sample)) - iac.ENVIRONMENT_SPECIFIC
    assert {"FLUSH_SCHEDULE", "RETRY_DELAYS_SECONDS", "ALLOWED_ATTACHMENT_HOSTS"} <= shared
    for name in shared:
        assert bicep[name] == terraform[name] == sample[name], name
