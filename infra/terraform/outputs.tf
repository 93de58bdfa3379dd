output "resource_group_name" {
  description = "Resource group holding everything."
  value       = azurerm_resource_group.main.name
}

output "function_app_name" {
  description = "Function App name (deploy target for func azure functionapp publish)."
  value       = azurerm_function_app_flex_consumption.app.name
}

output "app_identity_principal_id" {
  description = "Principal (object) id of the app's user-assigned identity: grant it access to the Fabric workspace."
  value       = azurerm_user_assigned_identity.app.principal_id
}

output "app_identity_client_id" {
  description = "Client id of the app's user-assigned identity."
  value       = azurerm_user_assigned_identity.app.client_id
}

output "key_vault_name" {
  description = "Key Vault holding the ClaimX token and plugin secrets."
  value       = azurerm_key_vault.main.name
}

output "eventhub_namespace" {
  description = "Fully qualified Event Hubs namespace."
  value       = "${azurerm_eventhub_namespace.main.name}.servicebus.windows.net"
}

output "host_storage_account" {
  description = "Host/state storage account name."
  value       = azurerm_storage_account.host.name
}

output "lake_tables_uri" {
  description = "Effective LAKE_TABLES_URI."
  value       = local.lake_tables_uri
}

output "xact_attachments_uri" {
  description = "Effective XACT_ATTACHMENTS_URI."
  value       = local.xact_attachments_uri
}
