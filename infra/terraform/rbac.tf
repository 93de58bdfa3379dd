# Every role assignment in one place: the app's identity gets exactly the data roles its code needs;
# the deploying principal (optional) gets the same plus Event Hubs Data Sender and Key Vault Secrets
# Officer. tests/infra/test_roles.py checks this file against the data map.

locals {
  with_user = var.principal_id != ""
}

# Host storage blobs: host locks, Event Hub checkpoints, deployment package, Durable leases, the app's leases.
resource "azurerm_role_assignment" "app_host_blob" {
  scope                = azurerm_storage_account.host.id
  role_definition_name = "Storage Blob Data Owner"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
}

# Host storage queues: Durable control and work-item queues.
resource "azurerm_role_assignment" "app_host_queue" {
  scope                = azurerm_storage_account.host.id
  role_definition_name = "Storage Queue Data Contributor"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
}

# Host storage tables: Durable History/Instances, dedup latch, staging, dead letters.
resource "azurerm_role_assignment" "app_host_table" {
  scope                = azurerm_storage_account.host.id
  role_definition_name = "Storage Table Data Contributor"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
}

# Lake: Delta tables (object_store) and attachment files (Blob API).
resource "azurerm_role_assignment" "app_lake_blob" {
  count                = local.use_lake_account ? 1 : 0
  scope                = azurerm_storage_account.lake[0].id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
}

# Event Hub triggers read both hubs through their consumer groups.
resource "azurerm_role_assignment" "app_eventhub_receiver" {
  scope                = azurerm_eventhub_namespace.main.id
  role_definition_name = "Azure Event Hubs Data Receiver"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
}

# Key Vault references (ClaimX token, plugin secrets).
resource "azurerm_role_assignment" "app_key_vault_secrets" {
  scope                = azurerm_key_vault.main.id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
}

# Entra-authenticated telemetry ingestion.
resource "azurerm_role_assignment" "app_metrics_publisher" {
  scope                = azurerm_application_insights.main.id
  role_definition_name = "Monitoring Metrics Publisher"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
}

# Durable Task Scheduler backend (optional).
resource "azurerm_role_assignment" "app_scheduler" {
  count                = local.use_scheduler ? 1 : 0
  scope                = azapi_resource.scheduler[0].id
  role_definition_name = "Durable Task Data Contributor"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
}

# ---- the deploying principal (func start with az login, ops CLI) ----

resource "azurerm_role_assignment" "user_host_blob" {
  count                = local.with_user ? 1 : 0
  scope                = azurerm_storage_account.host.id
  role_definition_name = "Storage Blob Data Owner"
  principal_id         = var.principal_id
  principal_type       = var.principal_type
}

resource "azurerm_role_assignment" "user_host_queue" {
  count                = local.with_user ? 1 : 0
  scope                = azurerm_storage_account.host.id
  role_definition_name = "Storage Queue Data Contributor"
  principal_id         = var.principal_id
  principal_type       = var.principal_type
}

resource "azurerm_role_assignment" "user_host_table" {
  count                = local.with_user ? 1 : 0
  scope                = azurerm_storage_account.host.id
  role_definition_name = "Storage Table Data Contributor"
  principal_id         = var.principal_id
  principal_type       = var.principal_type
}

resource "azurerm_role_assignment" "user_lake_blob" {
  count                = local.with_user && local.use_lake_account ? 1 : 0
  scope                = azurerm_storage_account.lake[0].id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = var.principal_id
  principal_type       = var.principal_type
}

resource "azurerm_role_assignment" "user_eventhub_receiver" {
  count                = local.with_user ? 1 : 0
  scope                = azurerm_eventhub_namespace.main.id
  role_definition_name = "Azure Event Hubs Data Receiver"
  principal_id         = var.principal_id
  principal_type       = var.principal_type
}

# Developers send test events to the hubs.
resource "azurerm_role_assignment" "user_eventhub_sender" {
  count                = local.with_user ? 1 : 0
  scope                = azurerm_eventhub_namespace.main.id
  role_definition_name = "Azure Event Hubs Data Sender"
  principal_id         = var.principal_id
  principal_type       = var.principal_type
}

# Developers set and rotate secrets (docs/deployment.md).
resource "azurerm_role_assignment" "user_key_vault_secrets" {
  count                = local.with_user ? 1 : 0
  scope                = azurerm_key_vault.main.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = var.principal_id
  principal_type       = var.principal_type
}

resource "azurerm_role_assignment" "user_metrics_publisher" {
  count                = local.with_user ? 1 : 0
  scope                = azurerm_application_insights.main.id
  role_definition_name = "Monitoring Metrics Publisher"
  principal_id         = var.principal_id
  principal_type       = var.principal_type
}

resource "azurerm_role_assignment" "user_scheduler" {
  count                = local.with_user && local.use_scheduler ? 1 : 0
  scope                = azapi_resource.scheduler[0].id
  role_definition_name = "Durable Task Data Contributor"
  principal_id         = var.principal_id
  principal_type       = var.principal_type
}
