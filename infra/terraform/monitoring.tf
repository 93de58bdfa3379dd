# Dashboards and alerts: the pipeline workbook, one log alert per rule in ../monitoring/alerts.json,
# and the action group they notify. The rules, their KQL and the workbook are the files
# infra/app/monitoring.bicep reads too (tests/infra/test_infra_monitoring.py keeps both in step).

locals {
  monitoring_dir = "${path.module}/../monitoring"
  alert_rules    = { for rule in jsondecode(file("${local.monitoring_dir}/alerts.json")).alerts : rule.key => rule }
  alert_scopes = {
    appInsights  = azurerm_application_insights.main.id
    logAnalytics = azurerm_log_analytics_workspace.main.id
  }
  workbook_data = replace(
    replace(file("${local.monitoring_dir}/workbook.json"), "__APP_INSIGHTS_ID__", azurerm_application_insights.main.id),
    "__EVENTHUB_NAMESPACE_ID__",
    azurerm_eventhub_namespace.main.id
  )
}

resource "azurerm_monitor_action_group" "on_call" {
  name                = "ag-claimsflow"
  resource_group_name = azurerm_resource_group.main.name
  short_name          = "claimsflow"
  tags                = local.tags

  dynamic "email_receiver" {
    for_each = var.alert_email == "" ? [] : [var.alert_email]
    content {
      name                    = "on-call"
      email_address           = email_receiver.value
      use_common_alert_schema = true
    }
  }
}

resource "azurerm_monitor_scheduled_query_rules_alert_v2" "pipeline" {
  for_each                = local.alert_rules
  name                    = "claimsflow-${each.key}"
  resource_group_name     = azurerm_resource_group.main.name
  location                = azurerm_resource_group.main.location
  display_name            = each.value.displayName
  description             = each.value.description
  severity                = each.value.severity
  enabled                 = true
  scopes                  = [local.alert_scopes[each.value.source]]
  evaluation_frequency    = each.value.evaluationFrequency
  window_duration         = each.value.windowSize
  skip_query_validation   = each.value.skipQueryValidation
  auto_mitigation_enabled = true
  tags                    = local.tags

  criteria {
    query                   = file("${local.monitoring_dir}/alerts/${each.key}.kql")
    time_aggregation_method = each.value.timeAggregation
    metric_measure_column   = each.value.metricMeasureColumn
    operator                = each.value.operator
    threshold               = each.value.threshold

    dynamic "dimension" {
      for_each = each.value.dimensions
      content {
        name     = dimension.value
        operator = "Include"
        values   = ["*"]
      }
    }

    failing_periods {
      number_of_evaluation_periods             = 1
      minimum_failing_periods_to_trigger_alert = 1
    }
  }

  action {
    action_groups = [azurerm_monitor_action_group.on_call.id]
  }
}

resource "azurerm_application_insights_workbook" "pipeline" {
  name                = uuidv5("url", "${azurerm_resource_group.main.id}/claimsflow-pipeline-workbook")
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  display_name        = "claimsflow pipeline"
  category            = "workbook"
  source_id           = lower(azurerm_application_insights.main.id)
  data_json           = local.workbook_data
  tags                = local.tags
}
