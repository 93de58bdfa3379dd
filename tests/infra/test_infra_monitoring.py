"""Dashboards and alerts: one set of files (infra/monitoring) feeds Bicep and Terraform alike.

The alert rules (alerts.json), their KQL (alerts/*.kql) and the workbook (workbook.json) are read by
infra/app/monitoring.bicep and infra/terraform/monitoring.tf; these tests check that both wire every
field the same way, and that every query parses and binds (Kusto language service, offline) against
the tables it runs on, using only the telemetry names and dimensions the app emits.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.infra import infra_iac as iac

pytestmark = pytest.mark.unit

MONITORING = iac.REPO / "infra" / "monitoring"
BICEP_MONITORING = iac.REPO / "infra" / "app" / "monitoring.bicep"
KQL_PACKAGE = iac.REPO / "infra" / "kql" / "package.json"
KQL_TOOLS = iac.REPO / ".tools" / "kql"
KQL_CHECK = Path(__file__).with_name("kql_check.js")

# OpenTelemetry instruments the app sends to Application Insights (customMetrics, same names) and
# the attributes each one carries: the names agreed between the telemetry code and these dashboards.
TELEMETRY = {
    "claimsflow.events": {"domain", "outcome"},
    "claimsflow.dedup.hits": {"domain"},
    "claimsflow.attachments": {"domain", "status"},
    "claimsflow.attachments.bytes": {"domain"},
    "claimsflow.transfer.duration": {"domain"},
    "claimsflow.retries": {"domain", "category"},
    "claimsflow.deadletters": {"domain", "stage", "reason"},
    "claimsflow.staging.backlog": {"table"},
    "claimsflow.staging.backlog_age": {"table"},
    "claimsflow.flush.rows": {"table"},
    "claimsflow.flush.duration": {"table"},
    "claimsflow.flush.failures": {"table"},
    "claimsflow.delta.commit_conflicts": {"table"},
    "claimsflow.instances.failed": {"domain", "orchestrator"},
    "claimsflow.freshness": {"domain", "table"},
}
REQUIRED_ALERTS = {
    "deadletter-growth",
    "staging-backlog-age",
    "failed-instances",
    "flush-failures",
    "eventhub-lag",
}
# Tables the queries run on: Application Insights customMetrics (classic schema, scope = the
# component) and Log Analytics AzureMetrics (platform metrics from the diagnostic setting).
TABLES = {
    "customMetrics": "(timestamp:datetime, name:string, value:real, valueCount:int, valueSum:real, "
    "valueMin:real, valueMax:real, valueStdDev:real, customDimensions:dynamic, cloud_RoleName:string, "
    "cloud_RoleInstance:string, operation_Name:string, operation_Id:string, itemCount:int)",
    "AzureMetrics": "(TimeGenerated:datetime, ResourceId:string, _ResourceId:string, "
    "ResourceProvider:string, Resource:string, ResourceGroup:string, SubscriptionId:string, "
    "MetricName:string, Total:real, "
    "Count:real, Maximum:real, Minimum:real, Average:real, TimeGrain:string, UnitName:string)",
}
TIME_COLUMN = {"appInsights": "timestamp", "logAnalytics": "TimeGenerated"}
# Values both APIs accept alike (azurerm spells Equals "Equal", so it is left out).
OPERATORS = {"GreaterThan", "GreaterThanOrEqual", "LessThan", "LessThanOrEqual"}
AGGREGATIONS = {"Total", "Minimum", "Maximum", "Average"}
FREQUENCIES = ["PT1M", "PT5M", "PT10M", "PT15M", "PT30M", "PT45M", "PT1H"]
WINDOWS = ["PT5M", "PT10M", "PT15M", "PT30M", "PT45M", "PT1H", "PT2H", "PT6H", "P1D"]
# Rule field -> (ARM property path in the Bicep loop body, azurerm argument path).
RULE_FIELDS = {
    "displayName": ("displayName", "display_name"),
    "description": ("description", "description"),
    "severity": ("severity", "severity"),
    "evaluationFrequency": ("evaluationFrequency", "evaluation_frequency"),
    "windowSize": ("windowSize", "window_duration"),
    "skipQueryValidation": ("skipQueryValidation", "skip_query_validation"),
}
CRITERIA_FIELDS = {
    "timeAggregation": ("timeAggregation", "time_aggregation_method"),
    "metricMeasureColumn": ("metricMeasureColumn", "metric_measure_column"),
    "operator": ("operator", "operator"),
    "threshold": ("threshold", "threshold"),
}


def _rules() -> list[dict[str, Any]]:
    return list(json.loads((MONITORING / "alerts.json").read_text())["alerts"])


def _workbook() -> dict[str, Any]:
    return dict(json.loads((MONITORING / "workbook.json").read_text()))


def _workbook_queries() -> dict[str, str]:
    """Workbook KQL with the workbook's grain parameter replaced by a literal bin size."""
    return {
        f"workbook:{item['name']}": item["content"]["query"].replace("{TimeRange:grain}", "5m")
        for item in _workbook()["items"]
        if item["type"] == 3
    }


def _alert_queries() -> dict[str, str]:
    return {path.stem: path.read_text() for path in sorted((MONITORING / "alerts").glob("*.kql"))}


# ---- the Kusto language service -------------------------------------------------------------------


def _kql_tools() -> Path:
    """The Kusto language service (npm) that scripts/bootstrap.sh installs into .tools/kql."""
    service = KQL_TOOLS / "node_modules" / "@kusto" / "language-service-next" / "bridge.js"
    installed = KQL_TOOLS / ".installed"
    assert service.exists() and installed.exists() and installed.read_text() == KQL_PACKAGE.read_text(), (
        "the Kusto language service is missing or outdated: run scripts/bootstrap.sh --checks"
    )
    return KQL_TOOLS


@cache
def _analyse(queries: tuple[tuple[str, str], ...]) -> dict[str, dict[str, Any]]:
    node = shutil.which("node")
    assert node, "node is needed for the KQL check"
    run = subprocess.run(
        [node, str(KQL_CHECK), str(_kql_tools())],
        input=json.dumps({"tables": TABLES, "queries": dict(queries)}),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return dict(json.loads(run.stdout))


def analyse(queries: dict[str, str]) -> dict[str, dict[str, Any]]:
    return _analyse(tuple(sorted(queries.items())))


def test_every_query_parses_and_binds() -> None:
    report = analyse({**_alert_queries(), **_workbook_queries()})
    assert len(report) == len(_alert_queries()) + len(_workbook_queries())
    assert {name: entry["diagnostics"] for name, entry in report.items() if entry["diagnostics"]} == {}


def test_the_kql_check_catches_mistakes() -> None:
    """A misspelt column, an unknown table and a syntax error are all reported."""
    report = analyse(
        {
            "column": 'customMetrics | where nmae == "claimsflow.events"',
            "table": "customMetric | take 1",
            "syntax": "customMetrics | summarize sum(valueSum) by bin(timestamp, 5m",
        }
    )
    assert all(entry["diagnostics"] for entry in report.values()), report


# ---- the rules -------------------------------------------------------------------------------------


def test_every_required_alert_has_a_rule_and_a_query() -> None:
    keys = [rule["key"] for rule in _rules()]
    assert len(keys) == len(set(keys))
    assert set(keys) == REQUIRED_ALERTS
    assert set(_alert_queries()) == set(keys)


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["key"])
def test_rule_values_are_accepted_by_both_apis(rule: dict[str, Any]) -> None:
    assert rule["operator"] in OPERATORS
    assert rule["timeAggregation"] in AGGREGATIONS
    assert rule["evaluationFrequency"] in FREQUENCIES and rule["windowSize"] in WINDOWS
    assert _minutes(rule["evaluationFrequency"]) <= _minutes(rule["windowSize"])
    assert rule["severity"] in range(5)
    assert isinstance(rule["threshold"], int)
    assert rule["source"] in TIME_COLUMN
    assert isinstance(rule["skipQueryValidation"], bool)
    assert rule["displayName"].startswith("claimsflow: ") and rule["description"]


def _minutes(duration: str) -> int:
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?", duration)
    assert match, duration
    days, hours, minutes = (int(part or 0) for part in match.groups())
    return (days * 24 + hours) * 60 + minutes


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["key"])
def test_rule_query_returns_its_measure_dimensions_and_time(rule: dict[str, Any]) -> None:
    """The rule aggregates metricMeasureColumn per dimension over the window: all must be columns."""
    columns = analyse({rule["key"]: _alert_queries()[rule["key"]]})[rule["key"]]["columns"]
    assert columns[rule["metricMeasureColumn"]] in {"real", "long", "int"}
    assert {columns[d] for d in rule["dimensions"]} == {"string"}
    assert columns[TIME_COLUMN[rule["source"]]] == "datetime"
    assert set(columns) == {rule["metricMeasureColumn"], TIME_COLUMN[rule["source"]], *rule["dimensions"]}


# ---- telemetry names --------------------------------------------------------------------------------


def _metric_references(query: str) -> tuple[set[str], set[str]]:
    """Metric names a query filters on and the customDimensions keys it reads."""
    names = set(re.findall(r'"(claimsflow\.[a-z_.]+)"', query))
    dimensions = set(re.findall(r'customDimensions\["([A-Za-z_]+)"\]', query))
    return names, dimensions


def test_queries_use_only_emitted_names_and_their_dimensions() -> None:
    for label, query in {**_alert_queries(), **_workbook_queries()}.items():
        names, dimensions = _metric_references(query)
        assert names <= set(TELEMETRY), (label, sorted(names - set(TELEMETRY)))
        if "customMetrics" in query:
            assert names, f"{label} reads customMetrics without naming a metric"
            common = set.intersection(*(TELEMETRY[n] for n in names))
            assert dimensions <= common, (label, sorted(dimensions - common))


def test_workbook_shows_every_metric_and_the_event_hub_traffic() -> None:
    workbook = _workbook()
    assert workbook["version"] == "Notebook/1.0"
    shown = set().union(*(_metric_references(q)[0] for q in _workbook_queries().values()))
    assert shown == set(TELEMETRY)
    queries = [item["content"] for item in workbook["items"] if item["type"] == 3]
    assert all(q["crossComponentResources"] == ["__APP_INSIGHTS_ID__"] for q in queries)
    assert all(q["timeContextFromParameter"] == "TimeRange" for q in queries)
    parameters = [p for item in workbook["items"] if item["type"] == 9 for p in item["content"]["parameters"]]
    assert [p["name"] for p in parameters] == ["TimeRange"]
    (traffic,) = [item["content"] for item in workbook["items"] if item["type"] == 10]
    assert traffic["resourceIds"] == ["__EVENTHUB_NAMESPACE_ID__"]
    assert {m["metric"].split("--")[1] for m in traffic["metrics"]} == {
        "IncomingMessages",
        "OutgoingMessages",
    }
    assert {m["splitBy"] for m in traffic["metrics"]} == {"EntityName"}


# ---- Bicep and Terraform wire the same files the same way ------------------------------------------------


def _bicep() -> dict[str, Any]:
    return iac.parse_bicep(BICEP_MONITORING)


def _bicep_rule_body() -> dict[str, Any]:
    alerts = _bicep()["resources"]["alerts"]
    assert alerts["type"] == "Microsoft.Insights/scheduledQueryRules"
    loop = alerts["config"]["loop_type"]["detail"]
    assert (loop["item_name"], loop["array_name"]) == ("rule", "alertRules")
    return dict(alerts["config"]["config"])


def _terraform() -> tuple[dict[str, Any], dict[str, Any]]:
    doc = iac.parse_terraform()
    return doc, iac.tf_resources(doc, "azurerm_monitor_scheduled_query_rules_alert_v2")["pipeline"]


def test_bicep_loads_the_shared_files() -> None:
    variables = _bicep()["variables"]
    assert (
        iac.bicep_expression(variables["alertRules"]["value"])
        == "load_json_content(../monitoring/alerts.json).alerts"
    )
    queries = {
        iac._unquote(key): iac.bicep_expression(value)
        for key, value in variables["alertQueries"]["value"].items()
    }
    assert queries == {key: f"load_text_content(../monitoring/alerts/{key}.kql)" for key in _alert_queries()}
    assert iac.bicep_expression(variables["workbookWithAppInsights"]["value"]) == (
        "replace(load_text_content(../monitoring/workbook.json), __APP_INSIGHTS_ID__, appInsightsId)"
    )
    assert iac.bicep_expression(variables["workbookData"]["value"]) == (
        "replace(workbookWithAppInsights, __EVENTHUB_NAMESPACE_ID__, eventHubNamespaceId)"
    )
    scopes = {key: iac.bicep_expression(v) for key, v in variables["alertScopes"]["value"].items()}
    assert scopes == {"appInsights": "appInsightsId", "logAnalytics": "logAnalyticsId"}


def test_terraform_loads_the_shared_files() -> None:
    doc, rule = _terraform()
    locals_ = iac.tf_locals(doc)
    assert iac.tf_expression(locals_["monitoring_dir"]) == "${path.module}/../monitoring"
    assert 'jsondecode(file("${local.monitoring_dir}/alerts.json")).alerts' in iac.tf_expression(
        locals_["alert_rules"]
    )
    assert iac.tf_expression(rule["for_each"]) == "local.alert_rules"
    criteria = iac._first(rule["criteria"])
    assert iac.tf_expression(criteria["query"]) == 'file("${local.monitoring_dir}/alerts/${each.key}.kql")'
    workbook = iac.tf_expression(locals_["workbook_data"])
    for token, target in (
        ("__APP_INSIGHTS_ID__", "azurerm_application_insights.main.id"),
        ("__EVENTHUB_NAMESPACE_ID__", "azurerm_eventhub_namespace.main.id"),
    ):
        assert f'"{token}"' in workbook and target in workbook
    assert 'file("${local.monitoring_dir}/workbook.json")' in workbook
    scopes = {k: iac.tf_expression(v) for k, v in locals_["alert_scopes"].items()}
    assert scopes == {
        "appInsights": "azurerm_application_insights.main.id",
        "logAnalytics": "azurerm_log_analytics_workspace.main.id",
    }


def test_both_flavours_take_every_rule_field_from_the_shared_rule() -> None:
    """Same queries, thresholds, windows and severities: both read each field from alerts.json."""
    bicep = _bicep_rule_body()
    properties = bicep["properties"]
    (criterion,) = properties["criteria"]["allOf"]
    _, terraform = _terraform()
    criteria = iac._first(terraform["criteria"])
    for field, (arm, azurerm) in RULE_FIELDS.items():
        assert iac.bicep_expression(properties[arm]) == f"rule.{field}", field
        assert iac.tf_expression(terraform[azurerm]) == f"each.value.{field}", field
    for field, (arm, azurerm) in CRITERIA_FIELDS.items():
        assert iac.bicep_expression(criterion[arm]) == f"rule.{field}", field
        assert iac.tf_expression(criteria[azurerm]) == f"each.value.{field}", field
    assert iac.bicep_expression(criterion["query"]) == "alertQueries[rule.key]"
    assert [iac.bicep_expression(s) for s in properties["scopes"]] == ["alertScopes[rule.source]"]
    assert [iac.tf_expression(s) for s in terraform["scopes"]] == ["local.alert_scopes[each.value.source]"]
    assert (
        bicep["name"] == "claimsflow-${rule.key}"
        and iac.tf_expression(terraform["name"]) == "claimsflow-${each.key}"
    )
    # Fixed values, equal in both.
    assert properties["enabled"] is True and terraform["enabled"] is True
    assert properties["autoMitigate"] is True and terraform["auto_mitigation_enabled"] is True
    assert criterion["failingPeriods"] == {"numberOfEvaluationPeriods": 1, "minFailingPeriodsToAlert": 1}
    periods = iac._first(criteria["failing_periods"])
    assert (periods["number_of_evaluation_periods"], periods["minimum_failing_periods_to_trigger_alert"]) == (
        1,
        1,
    )


def _dynamic_block(body: dict[str, Any], name: str) -> dict[str, Any]:
    blocks = {iac._unwrap(k): v for block in body["dynamic"] for k, v in block.items()}
    return dict(blocks[name])


def test_both_flavours_split_by_every_rule_dimension() -> None:
    (criterion,) = _bicep_rule_body()["properties"]["criteria"]["allOf"]
    loop = criterion["dimensions"]["loop_type"]["detail"]
    assert iac.bicep_expression(loop["array_name"]) == "rule.dimensions"
    assert criterion["dimensions"]["config"] == {
        "name": loop["item_name"],
        "operator": "Include",
        "values": ["*"],
    }
    _, terraform = _terraform()
    dynamic = _dynamic_block(iac._first(terraform["criteria"]), "dimension")
    assert iac.tf_expression(dynamic["for_each"]) == "each.value.dimensions"
    content = iac._first(dynamic["content"])
    assert iac.tf_expression(content["name"]) == "dimension.value"
    assert iac.tf_expression(content["operator"]) == "Include"
    assert [iac.tf_expression(v) for v in content["values"]] == ["*"]


def test_alerts_notify_one_action_group_with_an_optional_email() -> None:
    bicep = _bicep()
    assert [iac.bicep_expression(a) for a in _bicep_rule_body()["properties"]["actions"]["actionGroups"]] == [
        "onCall.id"
    ]
    group = bicep["resources"]["onCall"]["config"]
    assert bicep["resources"]["onCall"]["type"] == "Microsoft.Insights/actionGroups"
    receivers = group["properties"]["emailReceivers"]
    assert iac.bicep_expression(receivers).startswith("conditional(empty(alertEmail), [], ")
    assert bicep["parameters"]["alertEmail"]["default"] == ""
    doc, terraform = _terraform()
    assert [iac.tf_expression(a) for a in iac._first(terraform["action"])["action_groups"]] == [
        "azurerm_monitor_action_group.on_call.id"
    ]
    action_group = iac.tf_resources(doc, "azurerm_monitor_action_group")["on_call"]
    email = _dynamic_block(action_group, "email_receiver")
    assert iac.tf_expression(email["for_each"]) == 'var.alert_email == "" ? [] : [var.alert_email]'
    variables = {iac._unwrap(k): v for block in doc["variable"] for k, v in block.items()}
    assert iac._unwrap(variables["alert_email"]["default"]) == ""
    main = iac.parse_bicep(iac.REPO / iac.BICEP_MAIN)
    assert main["parameters"]["alertEmail"]["default"] == ""
    parameters = json.loads((iac.REPO / "infra/main.parameters.json").read_text())["parameters"]
    assert parameters["alertEmail"]["value"] == "${ALERT_EMAIL=}"


def test_main_wires_the_monitoring_module() -> None:
    params = iac.parse_bicep(iac.REPO / iac.BICEP_MAIN)["modules"]["monitoring"]["config"]["params"]
    wired = {key: iac.bicep_expression(value) for key, value in params.items()}
    assert wired == {
        "location": "location",
        "tags": "tags",
        "appInsightsId": "appInsights.outputs.resourceId",
        "logAnalyticsId": "logAnalytics.outputs.resourceId",
        "eventHubNamespaceId": "eventHubNamespace.outputs.resourceId",
        "alertEmail": "alertEmail",
    }


def test_workbook_is_the_shared_file_in_both_flavours() -> None:
    workbook = _bicep()["resources"]["workbook"]
    assert workbook["type"] == "Microsoft.Insights/workbooks"
    properties = workbook["config"]["properties"]
    assert properties["serializedData"] == "workbookData"
    assert iac.bicep_expression(properties["sourceId"]) == "to_lower(appInsightsId)"
    doc, _ = _terraform()
    terraform = iac.tf_resources(doc, "azurerm_application_insights_workbook")["pipeline"]
    assert iac.tf_expression(terraform["data_json"]) == "local.workbook_data"
    assert iac.tf_expression(terraform["source_id"]) == "lower(azurerm_application_insights.main.id)"
    assert iac._unwrap(terraform["display_name"]) == properties["displayName"]


def test_every_alert_is_documented() -> None:
    """docs/deployment.md explains each alert: what it means and the first thing to check."""
    docs = (iac.REPO / "docs" / "deployment.md").read_text()
    section = docs.split("## Alerts", 1)[1].split("\n## ", 1)[0]
    for rule in _rules():
        assert f"`{rule['key']}`" in section, rule["key"]
        assert rule["displayName"] in section, rule["displayName"]
