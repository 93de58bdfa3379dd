# claimsflow on Flex Consumption: the same resources and app settings as the Bicep in ../main.bicep.
# App settings live in app.tf, every role assignment in rbac.tf (tests/infra checks both).

data "azurerm_client_config" "current" {}

locals {
  token              = substr(sha1("${var.subscription_id}/${var.environment_name}/${var.location}"), 0, 13)
  tags               = merge(var.tags, { "azd-env-name" = var.environment_name })
  use_lake_account   = var.lake_tables_uri == ""
  use_scheduler      = var.durable_backend == "DurableTaskScheduler"
  lake_account_name  = "stlake${local.token}"
  lake_container     = "lakehouse"
  deployment_package = "app-package-${local.token}"
  lake_tables_uri    = local.use_lake_account ? "abfss://${local.lake_container}@${local.lake_account_name}.dfs.core.windows.net/Tables" : var.lake_tables_uri
  xact_attachments_uri = (var.xact_attachments_uri != "" ? var.xact_attachments_uri
  : replace(local.lake_tables_uri, "/Tables", "/Files/xact/attachments"))
  claimx_attachments_uri = (var.claimx_attachments_uri != "" ? var.claimx_attachments_uri
  : replace(local.lake_tables_uri, "/Tables", "/Files/claimx/attachments"))

  # One reader per source: each gets its own consumer group.
  event_hubs = {
    xactanalysis   = "claimsflow-xact"
    claimxperience = "claimsflow-claimx"
  }
}

resource "azurerm_resource_group" "main" {
  name     = "rg-${var.environment_name}"
  location = var.location
  tags     = local.tags
}

resource "azurerm_user_assigned_identity" "app" {
  name                = "id-claimsflow-${local.token}"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  tags                = local.tags
}

resource "azurerm_log_analytics_workspace" "main" {
  name                = "log-${local.token}"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  sku                 = "PerGB2018"
  retention_in_days   = 30
  tags                = local.tags
}

resource "azurerm_application_insights" "main" {
  name                = "appi-${local.token}"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  workspace_id        = azurerm_log_analytics_workspace.main.id
  application_type    = "web"
  # Entra-only ingestion: the app sends with APPLICATIONINSIGHTS_AUTHENTICATION_STRING.
  local_authentication_disabled = true
  tags                          = local.tags
}

# Host storage: Functions host, deployment package, Durable task hub, and the app's state (leases,
# dedup latch, staging and dead-letter tables).
resource "azurerm_storage_account" "host" {
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys; customer-managed keys are an organisation choice, not a template default.
  #checkov:skip=CKV2_AZURE_33:No VNet in this template (Flex without VNet integration); see docs/deployment.md, private networking.
  #checkov:skip=CKV_AZURE_59:Public endpoint needed without VNet integration; shared keys are disabled, access is Entra RBAC only.
  #checkov:skip=CKV_AZURE_35:Default action Allow for the same reason as CKV_AZURE_59 (Flex egress has no fixed address without a VNet).
  #checkov:skip=CKV_AZURE_33:Queue logging uses the classic (shared-key) analytics API; diagnostics go through Azure Monitor instead.
  #checkov:skip=CKV_AZURE_206:ZRS is deliberate: host state is transient (leases, queues, staging); geo-replication adds cost, not safety.
  #checkov:skip=CKV2_AZURE_41:SAS is unusable here: shared-key access (the only SAS signer besides user delegation) is disabled.
  name                            = "st${local.token}"
  resource_group_name             = azurerm_resource_group.main.name
  location                        = azurerm_resource_group.main.location
  account_kind                    = "StorageV2"
  account_tier                    = "Standard"
  account_replication_type        = "ZRS"
  shared_access_key_enabled       = false
  default_to_oauth_authentication = true
  allow_nested_items_to_be_public = false
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  local_user_enabled              = false
  public_network_access_enabled   = true
  tags                            = local.tags

  blob_properties {
    delete_retention_policy {
      days = 7
    }
    container_delete_retention_policy {
      days = 7
    }
  }

  network_rules {
    default_action = "Allow"
    bypass         = ["AzureServices"]
  }
}

resource "azurerm_storage_container" "deployment" {
  #checkov:skip=CKV2_AZURE_21:Blob read logging comes from Azure Monitor diagnostic settings, not classic storage logging.
  name                  = local.deployment_package
  storage_account_id    = azurerm_storage_account.host.id
  container_access_type = "private"
}

# Optional ADLS Gen2 lake for users without Fabric (OneLake access is granted in Fabric instead).
resource "azurerm_storage_account" "lake" {
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys; customer-managed keys are an organisation choice, not a template default.
  #checkov:skip=CKV2_AZURE_33:No VNet in this template (Flex without VNet integration); see docs/deployment.md, private networking.
  #checkov:skip=CKV_AZURE_59:Public endpoint needed without VNet integration; shared keys are disabled, access is Entra RBAC only.
  #checkov:skip=CKV_AZURE_35:Default action Allow for the same reason as CKV_AZURE_59 (Flex egress has no fixed address without a VNet).
  #checkov:skip=CKV_AZURE_33:Queue logging uses the classic (shared-key) analytics API; the lake has no queues in use.
  #checkov:skip=CKV_AZURE_206:ZRS by default; choose GZRS for the lake if the organisation requires geo-redundancy.
  #checkov:skip=CKV2_AZURE_41:SAS is unusable here: shared-key access is disabled.
  #checkov:skip=CKV2_AZURE_38:Soft delete is not offered with hierarchical namespace for every feature; Delta keeps its own history.
  count                           = local.use_lake_account ? 1 : 0
  name                            = local.lake_account_name
  resource_group_name             = azurerm_resource_group.main.name
  location                        = azurerm_resource_group.main.location
  account_kind                    = "StorageV2"
  account_tier                    = "Standard"
  account_replication_type        = "ZRS"
  is_hns_enabled                  = true
  shared_access_key_enabled       = false
  default_to_oauth_authentication = true
  allow_nested_items_to_be_public = false
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  local_user_enabled              = false
  public_network_access_enabled   = true
  tags                            = local.tags

  network_rules {
    default_action = "Allow"
    bypass         = ["AzureServices"]
  }
}

resource "azurerm_storage_container" "lake" {
  #checkov:skip=CKV2_AZURE_21:Blob read logging comes from Azure Monitor diagnostic settings, not classic storage logging.
  count                 = local.use_lake_account ? 1 : 0
  name                  = local.lake_container
  storage_account_id    = azurerm_storage_account.lake[0].id
  container_access_type = "private"
}

resource "azurerm_eventhub_namespace" "main" {
  #checkov:skip=CKV2_AZURE_32:No VNet in this template; local auth is disabled so only Entra principals with data roles connect.
  #checkov:skip=CKV_AZURE_228:Zone redundancy is automatic for Event Hubs namespaces in zone-enabled regions.
  name                          = "evhns-${local.token}"
  resource_group_name           = azurerm_resource_group.main.name
  location                      = azurerm_resource_group.main.location
  sku                           = "Standard"
  capacity                      = var.eventhub_capacity
  local_authentication_enabled  = false
  minimum_tls_version           = "1.2"
  public_network_access_enabled = true
  tags                          = local.tags
}

# Platform metrics (IncomingMessages, OutgoingMessages) into Log Analytics for the lag alert.
resource "azurerm_monitor_diagnostic_setting" "eventhub_metrics" {
  name                       = "metrics-to-log-analytics"
  target_resource_id         = azurerm_eventhub_namespace.main.id
  log_analytics_workspace_id = azurerm_log_analytics_workspace.main.id

  enabled_metric {
    category = "AllMetrics"
  }
}

resource "azurerm_eventhub" "source" {
  for_each          = local.event_hubs
  name              = each.key
  namespace_id      = azurerm_eventhub_namespace.main.id
  partition_count   = var.eventhub_partition_count
  message_retention = 7
}

resource "azurerm_eventhub_consumer_group" "reader" {
  for_each            = local.event_hubs
  name                = each.value
  namespace_name      = azurerm_eventhub_namespace.main.name
  eventhub_name       = azurerm_eventhub.source[each.key].name
  resource_group_name = azurerm_resource_group.main.name
}

resource "azurerm_key_vault" "main" {
  #checkov:skip=CKV_AZURE_109:Key Vault references from Flex without VNet integration need the public endpoint; RBAC-only access.
  #checkov:skip=CKV_AZURE_189:Same as CKV_AZURE_109: public endpoint, no access policies, RBAC authorization only.
  #checkov:skip=CKV2_AZURE_32:No VNet in this template; see docs/deployment.md, private networking.
  name                          = "kv-${local.token}"
  resource_group_name           = azurerm_resource_group.main.name
  location                      = azurerm_resource_group.main.location
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "standard"
  rbac_authorization_enabled    = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = 90
  public_network_access_enabled = true
  tags                          = local.tags

  network_acls {
    default_action = "Allow"
    bypass         = "AzureServices"
  }
}

resource "azurerm_service_plan" "main" {
  #checkov:skip=CKV_AZURE_212:Flex Consumption (FC1) has no worker count; scale is per function group (always_ready in app.tf).
  #checkov:skip=CKV_AZURE_225:Flex Consumption zone redundancy is configured on the app, not the FC1 plan.
  #checkov:skip=CKV_AZURE_211:FC1 is the serverless Flex Consumption SKU, not a free or shared tier.
  name                = "plan-${local.token}"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  os_type             = "Linux"
  sku_name            = "FC1"
  tags                = local.tags
}

# Optional Durable backend (azapi: the scheduler is newer than the azurerm resources).
resource "azapi_resource" "scheduler" {
  count     = local.use_scheduler ? 1 : 0
  type      = "Microsoft.DurableTask/schedulers@2025-11-01"
  name      = "dts-${local.token}"
  parent_id = azurerm_resource_group.main.id
  location  = azurerm_resource_group.main.location
  tags      = local.tags
  body = {
    properties = {
      # Only a Dedicated scheduler has capacity units.
      sku = merge(
        { name = var.durable_task_scheduler_sku },
        var.durable_task_scheduler_sku == "Dedicated" ? { capacity = var.durable_task_scheduler_capacity } : {}
      )
      ipAllowlist = ["0.0.0.0/0"]
    }
  }
  response_export_values = ["properties.endpoint"]
}

resource "azapi_resource" "task_hub" {
  count     = local.use_scheduler ? 1 : 0
  type      = "Microsoft.DurableTask/schedulers/taskHubs@2025-11-01"
  name      = var.task_hub_name
  parent_id = azapi_resource.scheduler[0].id
  body      = {}
}
