// The Function App on Flex Consumption and its app settings. Every setting the code reads is in
// `appSettings` below, in its identity-based form: no account key or SAS appears anywhere.
// tests/infra/test_settings_parity.py compares these keys with shared/config.py and the sample file.

@description('Function App name.')
param name string
param location string
param tags object
param planId string
@description('Resource id of the user-assigned identity the app runs as.')
param identityId string
@description('Client id of that identity (for AzureWebJobsStorage__clientId and friends).')
param identityClientId string
param hostStorageName string
param deploymentContainerName string
param eventHubNamespaceName string
param xactEventHubName string
param xactConsumerGroup string
param claimxEventHubName string
param claimxConsumerGroup string
@secure()
param appInsightsConnectionString string
param keyVaultName string
param lakeTablesUri string
param xactAttachmentsUri string
param claimxAttachmentsUri string
@description('Eventhouse (Kusto) cluster URL of the ClaimX events table; empty leaves the poller off.')
param claimxEventhouseClusterUrl string = ''
param claimxEventhouseDatabase string = ''
param taskHubName string
@description('Durable Task Scheduler endpoint; empty selects the Azure Storage backend from host.json.')
param durableTaskSchedulerEndpoint string = ''
param pythonVersion string
param maximumInstanceCount int
param instanceMemoryMB int
param durableAlwaysReady int

var storageSuffix = environment().suffixes.storage
var blobEndpoint = 'https://${hostStorageName}.blob.${storageSuffix}/'

// Key Vault reference helper for secrets (ClaimX token, plugin secrets): the platform resolves it
// with keyVaultReferenceIdentity below. Example: CLAIMX_API_TOKEN: '${keyVaultRefPrefix}claimx-api-token)'
var keyVaultRefPrefix = '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName='

var appSettings = {
  // Functions host storage and the app's state account, identity-based.
  AzureWebJobsStorage__blobServiceUri: blobEndpoint
  AzureWebJobsStorage__queueServiceUri: 'https://${hostStorageName}.queue.${storageSuffix}/'
  AzureWebJobsStorage__tableServiceUri: 'https://${hostStorageName}.table.${storageSuffix}/'
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AZURE_CLIENT_ID: identityClientId
  // Event Hub trigger connection (binding prefix EventHubConnection), identity-based.
  EventHubConnection__fullyQualifiedNamespace: '${eventHubNamespaceName}.servicebus.windows.net'
  EventHubConnection__credential: 'managedidentity'
  EventHubConnection__clientId: identityClientId
  // Telemetry with Entra auth (the component has local auth disabled).
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // The Python worker configures Azure Monitor once, so the worker's logs, traces and metrics join
  // the host's OpenTelemetry stream (host.json telemetryMode).
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'
  // The app.
  ENVIRONMENT: 'production'
  XACT_EVENTHUB_NAME: xactEventHubName
  XACT_EVENTHUB_CONSUMER_GROUP: xactConsumerGroup
  TASKHUB_NAME: taskHubName
  LAKE_TABLES_URI: lakeTablesUri
  XACT_ATTACHMENTS_URI: xactAttachmentsUri
  ATTACHMENT_API: 'blob'
  RETRY_DELAYS_SECONDS: '300,600,1200,2400'
  DEDUP_TTL_SECONDS: '86400'
  DEDUP_CACHE_SIZE: '100000'
  STATE_TABLE_SHARDS: '16'
  ALLOWED_ATTACHMENT_HOSTS: 'usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com,claimxperience.s3.amazonaws.com,claimxperience.s3.us-east-1.amazonaws.com,www.claimxperience.com,claimxperience.com,xactware-claimx-us-prod.s3.us-west-1.amazonaws.com'
  TRANSFER_BLOCK_SIZE_MB: '8'
  TRANSFER_TIMEOUT_SECONDS: '300'
  MAX_ATTACHMENT_MB: '2048'
  FLUSH_SCHEDULE: '*/15 * * * * *'
  COMPACT_SCHEDULE: '0 17 * * * *'
  FLUSH_MAX_ROWS: '5000'
  VACUUM_RETENTION_HOURS: '168'
  INSTANCE_RETENTION_DAYS: '30'
  // ClaimX: its own consumer group, the REST API (token from Key Vault), the Eventhouse poller.
  CLAIMX_EVENTHUB_NAME: claimxEventHubName
  CLAIMX_EVENTHUB_CONSUMER_GROUP: claimxConsumerGroup
  CLAIMX_ATTACHMENTS_URI: claimxAttachmentsUri
  CLAIMX_API_URL: 'https://www.claimxperience.com/service/cxedirest'
  CLAIMX_API_TOKEN: '${keyVaultRefPrefix}claimx-api-token)'
  CLAIMX_API_TIMEOUT_SECONDS: '30'
  CLAIMX_API_CONCURRENCY: '20'
  CLAIMX_API_RATE_LIMIT_PER_SECOND: '0'
  CLAIMX_API_RETRY_BACKOFF_SECONDS: '1'
  CLAIMX_SENDER_USERNAME: ''
  CLAIMX_PROJECT_CACHE_TTL_SECONDS: '900'
  CLAIMX_EVENTHOUSE_CLUSTER_URL: claimxEventhouseClusterUrl
  CLAIMX_EVENTHOUSE_DATABASE: claimxEventhouseDatabase
  CLAIMX_EVENTHOUSE_TABLE: 'ClaimXEvents'
  CLAIMX_POLL_SCHEDULE: '*/30 * * * * *'
  CLAIMX_POLL_BATCH_SIZE: '1000'
}

// Durable Task Scheduler: host.json stays on AzureStorage; these host-level overrides switch the
// storage provider and the extension bundle without a second host.json.
var durableTaskSchedulerSettings = {
  DURABLE_TASK_SCHEDULER_CONNECTION_STRING: 'Endpoint=${durableTaskSchedulerEndpoint};Authentication=ManagedIdentity;ClientID=${identityClientId}'
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__type: 'azureManaged'
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING'
  AzureFunctionsJobHost__extensionBundle__id: 'Microsoft.Azure.Functions.ExtensionBundle.Preview'
  AzureFunctionsJobHost__extensionBundle__version: '[4.29.0, 5.0.0)'
}

var useDurableTaskScheduler = !empty(durableTaskSchedulerEndpoint)

module site 'br/public:avm/res/web/site:0.24.0' = {
  name: 'function-app'
  params: {
    name: name
    location: location
    tags: tags
    kind: 'functionapp,linux'
    serverFarmResourceId: planId
    httpsOnly: true
    clientAffinityEnabled: false
    managedIdentities: {
      userAssignedResourceIds: [
        identityId
      ]
    }
    // Key Vault references resolve with the user-assigned identity.
    keyVaultAccessIdentityResourceId: identityId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        // Orchestrators, activities and entities scale as one group, "durable".
        alwaysReady: [
          {
            name: 'durable'
            instanceCount: durableAlwaysReady
          }
        ]
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    basicPublishingCredentialsPolicies: [
      {
        name: 'ftp'
        allow: false
      }
      {
        name: 'scm'
        allow: false
      }
    ]
    configs: [
      {
        name: 'appsettings'
        properties: union(appSettings, (useDurableTaskScheduler ? durableTaskSchedulerSettings : {}))
      }
    ]
  }
}

output name string = site.outputs.name
output resourceId string = site.outputs.resourceId
output defaultHostname string = site.outputs.defaultHostname
output keyVaultReferenceExample string = '${keyVaultRefPrefix}claimx-api-token)'
