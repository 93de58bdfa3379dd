# The Function App on Flex Consumption. Every setting the code reads is in local.app_settings, in its
# identity-based form: no account key or SAS anywhere. APPLICATIONINSIGHTS_CONNECTION_STRING is set
# by the provider from site_config.application_insights_connection_string.

locals {
  blob_endpoint = azurerm_storage_account.host.primary_blob_endpoint
  client_id     = azurerm_user_assigned_identity.app.client_id

  # Key Vault references for secrets (ClaimX token, plugin secrets), resolved with the app identity:
  # CLAIMX_API_TOKEN = "${local.key_vault_ref_prefix}claimx-api-token)"
  key_vault_ref_prefix = "@Microsoft.KeyVault(VaultName=${azurerm_key_vault.main.name};SecretName="

  app_settings = {
    # With identity-based storage the provider still adds an AzureWebJobsStorage connection string
    # with an empty key, which the host would prefer to the __ settings below. A setting declared
    # here replaces the generated one, so it stays blank (shared/config.py reads blank as absent).
    AzureWebJobsStorage = ""
    # Functions host storage and the app's state account, identity-based.
    AzureWebJobsStorage__blobServiceUri  = local.blob_endpoint
    AzureWebJobsStorage__queueServiceUri = azurerm_storage_account.host.primary_queue_endpoint
    AzureWebJobsStorage__tableServiceUri = azurerm_storage_account.host.primary_table_endpoint
    AzureWebJobsStorage__credential      = "managedidentity"
    AzureWebJobsStorage__clientId        = local.client_id
    AZURE_CLIENT_ID                      = local.client_id
    # Event Hub trigger connection (binding prefix EventHubConnection), identity-based.
    EventHubConnection__fullyQualifiedNamespace = "${azurerm_eventhub_namespace.main.name}.servicebus.windows.net"
    EventHubConnection__credential              = "managedidentity"
    EventHubConnection__clientId                = local.client_id
    # Telemetry with Entra auth (the component has local auth disabled).
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING = "ClientId=${local.client_id};Authorization=AAD"
    # The Python worker configures Azure Monitor once (host.json telemetryMode: OpenTelemetry).
    PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY = "true"
    # The app.
    ENVIRONMENT                  = "production"
    XACT_EVENTHUB_NAME           = azurerm_eventhub.source["xactanalysis"].name
    XACT_EVENTHUB_CONSUMER_GROUP = azurerm_eventhub_consumer_group.reader["xactanalysis"].name
    TASKHUB_NAME                 = var.task_hub_name
    LAKE_TABLES_URI              = local.lake_tables_uri
    XACT_ATTACHMENTS_URI         = local.xact_attachments_uri
    ATTACHMENT_API               = "blob"
    RETRY_DELAYS_SECONDS         = "300,600,1200,2400"
    DEDUP_TTL_SECONDS            = "86400"
    DEDUP_CACHE_SIZE             = "100000"
    STATE_TABLE_SHARDS           = "16"
    ALLOWED_ATTACHMENT_HOSTS     = "usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com,claimxperience.s3.amazonaws.com,claimxperience.s3.us-east-1.amazonaws.com,www.claimxperience.com,claimxperience.com,xactware-claimx-us-prod.s3.us-west-1.amazonaws.com"
    TRANSFER_BLOCK_SIZE_MB       = "8"
    TRANSFER_TIMEOUT_SECONDS     = "300"
    MAX_ATTACHMENT_MB            = "2048"
    FLUSH_SCHEDULE               = "*/15 * * * * *"
    COMPACT_SCHEDULE             = "0 17 * * * *"
    FLUSH_MAX_ROWS               = "5000"
    VACUUM_RETENTION_HOURS       = "168"
    INSTANCE_RETENTION_DAYS      = "30"
    # ClaimX: its own consumer group, the REST API (token from Key Vault), the Eventhouse poller.
    CLAIMX_EVENTHUB_NAME             = azurerm_eventhub.source["claimxperience"].name
    CLAIMX_EVENTHUB_CONSUMER_GROUP   = azurerm_eventhub_consumer_group.reader["claimxperience"].name
    CLAIMX_ATTACHMENTS_URI           = local.claimx_attachments_uri
    CLAIMX_API_URL                   = "https://www.claimxperience.com/service/cxedirest"
    CLAIMX_API_TOKEN                 = "${local.key_vault_ref_prefix}claimx-api-token)"
    CLAIMX_API_TIMEOUT_SECONDS       = "30"
    CLAIMX_API_CONCURRENCY           = "20"
    CLAIMX_API_RATE_LIMIT_PER_SECOND = "0"
    CLAIMX_API_RETRY_BACKOFF_SECONDS = "1"
    CLAIMX_SENDER_USERNAME           = ""
    CLAIMX_PROJECT_CACHE_TTL_SECONDS = "900"
    CLAIMX_EVENTHOUSE_CLUSTER_URL    = var.claimx_eventhouse_cluster_url
    CLAIMX_EVENTHOUSE_DATABASE       = var.claimx_eventhouse_database
    CLAIMX_EVENTHOUSE_TABLE          = "ClaimXEvents"
    CLAIMX_POLL_SCHEDULE             = "*/30 * * * * *"
    CLAIMX_POLL_BATCH_SIZE           = "1000"
  }

  # Durable Task Scheduler: host.json stays on AzureStorage; host-level overrides switch the provider
  # and the extension bundle.
  durable_task_scheduler_settings = local.use_scheduler ? {
    DURABLE_TASK_SCHEDULER_CONNECTION_STRING                                              = "Endpoint=${azapi_resource.scheduler[0].output.properties.endpoint};Authentication=ManagedIdentity;ClientID=${local.client_id}"
    AzureFunctionsJobHost__extensions__durableTask__storageProvider__type                 = "azureManaged"
    AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName = "DURABLE_TASK_SCHEDULER_CONNECTION_STRING"
    AzureFunctionsJobHost__extensionBundle__id                                            = "Microsoft.Azure.Functions.ExtensionBundle.Preview"
    AzureFunctionsJobHost__extensionBundle__version                                       = "[4.29.0, 5.0.0)"
  } : {}
}

resource "azurerm_function_app_flex_consumption" "app" {
  name                = "func-claimsflow-${local.token}"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  service_plan_id     = azurerm_service_plan.main.id
  tags                = merge(local.tags, { "azd-service-name" = "api" })

  runtime_name           = "python"
  runtime_version        = var.python_version
  maximum_instance_count = var.maximum_instance_count
  instance_memory_in_mb  = var.instance_memory_in_mb

  # Deployment package from a blob container, read with the user-assigned identity.
  storage_container_type            = "blobContainer"
  storage_container_endpoint        = "${local.blob_endpoint}${azurerm_storage_container.deployment.name}"
  storage_authentication_type       = "UserAssignedIdentity"
  storage_user_assigned_identity_id = azurerm_user_assigned_identity.app.id

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.app.id]
  }

  https_only                                     = true
  webdeploy_publish_basic_authentication_enabled = false
  client_certificate_mode                        = "Optional"

  # Orchestrators, activities and entities scale as one group, "durable".
  always_ready {
    name           = "durable"
    instance_count = var.durable_always_ready
  }

  site_config {
    application_insights_connection_string = azurerm_application_insights.main.connection_string
    minimum_tls_version                    = "1.2"
    scm_minimum_tls_version                = "1.2"
    http2_enabled                          = true
  }

  app_settings = merge(local.app_settings, local.durable_task_scheduler_settings)

  depends_on = [
    azurerm_role_assignment.app_host_blob,
    azurerm_role_assignment.app_host_queue,
    azurerm_role_assignment.app_host_table,
  ]
}

# Key Vault references resolve with the user-assigned identity. The flex resource has no argument
# for it, so it is set on the site through the ARM API (azapi reads the site, merges this property
# and writes it back). azurerm updates the app from the site it reads back, which keeps it.
resource "azapi_update_resource" "app_key_vault_reference_identity" {
  type        = "Microsoft.Web/sites@2024-11-01"
  resource_id = azurerm_function_app_flex_consumption.app.id
  body = {
    properties = {
      keyVaultReferenceIdentity = azurerm_user_assigned_identity.app.id
    }
  }
}
