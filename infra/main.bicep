// claimsflow: everything `azd up` provisions. Subscription scope: the resource group is created here.
// Resource shapes follow the azd Flex Consumption quickstarts; Azure Verified Modules are pinned by version.
// App settings live in app/api.bicep, every role assignment in app/rbac.bicep (tests/infra checks both).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; seeds the unique resource token.')
param environmentName string

@minLength(1)
@description('Region for every resource. It must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the deploying user or CI principal. When set, it gets the same data roles as the app, so `func start` on a laptop reaches the same resources with `az login`.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
@description('Principal type of principalId.')
param principalType string = 'User'

@allowed([
  'AzureStorage'
  'DurableTaskScheduler'
])
@description('Durable Functions backend. AzureStorage uses the host storage account; DurableTaskScheduler provisions a scheduler and overrides host.json through app settings.')
param durableBackend string = 'AzureStorage'

@allowed([
  'Consumption'
  'Dedicated'
])
@description('Durable Task Scheduler SKU (only with durableBackend = DurableTaskScheduler).')
param durableTaskSchedulerSku string = 'Consumption'

@minValue(1)
@maxValue(3)
@description('Capacity units of a Dedicated Durable Task Scheduler (ignored by Consumption).')
param durableTaskSchedulerCapacity int = 1

@description('abfss:// URI of the Delta tables folder, e.g. OneLake abfss://<workspace>@onelake.dfs.fabric.microsoft.com/<lakehouse>.Lakehouse/Tables. Empty: an ADLS Gen2 lake account is created and used.')
param lakeTablesUri string = ''

@description('abfss:// URI of the XACT attachment folder. Empty: derived from lakeTablesUri (Tables -> Files/xact/attachments).')
param xactAttachmentsUri string = ''

@description('abfss:// URI of the ClaimX media folder. Empty: derived from lakeTablesUri (Tables -> Files/claimx/attachments).')
param claimxAttachmentsUri string = ''

@description('Eventhouse (Kusto) cluster URL holding the ClaimX events table; empty leaves the ClaimX poller off.')
param claimxEventhouseClusterUrl string = ''

@description('Eventhouse database of the ClaimX events table.')
param claimxEventhouseDatabase string = ''

@minValue(1)
@maxValue(32)
@description('Partitions per event hub. Fixed after creation on Standard; it caps the Event Hub trigger scale-out.')
param eventHubPartitionCount int = 4

@minValue(1)
@maxValue(20)
@description('Event Hubs throughput units (Standard tier).')
param eventHubCapacity int = 1

@minValue(40)
@maxValue(1000)
@description('Flex Consumption maximum instance count for the whole app.')
param maximumInstanceCount int = 100

@allowed([
  2048
  4096
])
@description('Flex Consumption instance memory in MB.')
param instanceMemoryMB int = 2048

@minValue(0)
@maxValue(10)
@description('Always-ready instances for the durable trigger group (orchestrators and activities scale together).')
param durableAlwaysReady int = 1

@description('Python version of the Flex runtime (the app requires 3.11 or 3.12).')
@allowed([
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Durable task hub name: letters and digits only, unique per app sharing a storage account.')
param taskHubName string = 'claimsflow'

@description('E-mail address the alerts notify (action group receiver). Empty: alerts fire without notifying anyone.')
param alertEmail string = ''

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.webSitesFunctions}claimsflow-${resourceToken}'
var deploymentContainerName = 'app-package-${take(resourceToken, 12)}'
var useLakeAccount = empty(lakeTablesUri)
var lakeAccountName = '${abbrs.storageStorageAccounts}lake${resourceToken}'
var lakeContainerName = 'lakehouse'
var lakeDfsHost = '${lakeAccountName}.dfs.${environment().suffixes.storage}'
var effectiveTablesUri = useLakeAccount ? 'abfss://${lakeContainerName}@${lakeDfsHost}/Tables' : lakeTablesUri
var effectiveClaimxAttachmentsUri = !empty(claimxAttachmentsUri) ? claimxAttachmentsUri : replace(effectiveTablesUri, '/Tables', '/Files/claimx/attachments')
var effectiveAttachmentsUri = !empty(xactAttachmentsUri) ? xactAttachmentsUri : replace(effectiveTablesUri, '/Tables', '/Files/xact/attachments')

// One reader per source: each gets its own consumer group so offsets never interfere.
var eventHubs = [
  {
    name: 'xactanalysis'
    consumerGroup: 'claimsflow-xact'
  }
  {
    name: 'claimxperience'
    consumerGroup: 'claimsflow-claimx'
  }
]

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'br/public:avm/res/managed-identity/user-assigned-identity:0.6.0' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}claimsflow-${resourceToken}'
    location: location
    tags: tags
  }
}

module logAnalytics 'br/public:avm/res/operational-insights/workspace:0.16.1' = {
  name: 'log-analytics'
  scope: rg
  params: {
    name: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    location: location
    tags: tags
    dataRetention: 30
  }
}

module appInsights 'br/public:avm/res/insights/component:0.8.0' = {
  name: 'app-insights'
  scope: rg
  params: {
    name: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    workspaceResourceId: logAnalytics.outputs.resourceId
    // Entra-only ingestion: the app sends with APPLICATIONINSIGHTS_AUTHENTICATION_STRING.
    disableLocalAuth: true
  }
}

// Host storage: Functions host, deployment package, Durable task hub (queues, tables, blobs), and the
// app's own state (leases/locks containers, dedup latch, staging and dead-letter tables).
module hostStorage 'br/public:avm/res/storage/storage-account:0.33.0' = {
  name: 'host-storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    kind: 'StorageV2'
    skuName: 'Standard_ZRS'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    blobServices: {
      deleteRetentionPolicyEnabled: true
      deleteRetentionPolicyDays: 7
      containers: [
        {
          name: deploymentContainerName
          publicAccess: 'None'
        }
      ]
    }
  }
}

module lakeStorage 'br/public:avm/res/storage/storage-account:0.33.0' = if (useLakeAccount) {
  name: 'lake-storage'
  scope: rg
  params: {
    name: lakeAccountName
    location: location
    tags: tags
    kind: 'StorageV2'
    skuName: 'Standard_ZRS'
    enableHierarchicalNamespace: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    blobServices: {
      containers: [
        {
          name: lakeContainerName
          publicAccess: 'None'
        }
      ]
    }
  }
}

module eventHubNamespace 'br/public:avm/res/event-hub/namespace:0.15.0' = {
  name: 'event-hubs'
  scope: rg
  params: {
    name: '${abbrs.eventHubNamespaces}${resourceToken}'
    location: location
    tags: tags
    skuName: 'Standard'
    skuCapacity: eventHubCapacity
    zoneRedundant: true
    // Entra-only: no SAS keys exist, the app connects with its identity.
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    // Platform metrics (IncomingMessages, OutgoingMessages) into Log Analytics for the lag alert.
    diagnosticSettings: [
      {
        name: 'metrics-to-log-analytics'
        workspaceResourceId: logAnalytics.outputs.resourceId
        metricCategories: [
          {
            category: 'AllMetrics'
          }
        ]
      }
    ]
    eventhubs: [
      for hub in eventHubs: {
        name: hub.name
        partitionCount: eventHubPartitionCount
        messageRetentionInDays: 7
        consumergroups: [
          {
            name: hub.consumerGroup
          }
        ]
      }
    ]
  }
}

module keyVault 'br/public:avm/res/key-vault/vault:0.14.0' = {
  name: 'key-vault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${take(resourceToken, 20)}'
    location: location
    tags: tags
    sku: 'standard'
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    enableVaultForDeployment: false
    enableVaultForDiskEncryption: false
    enableVaultForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

module plan 'br/public:avm/res/web/serverfarm:0.7.0' = {
  name: 'plan'
  scope: rg
  params: {
    name: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    skuName: 'FC1'
    kind: 'functionapp'
    reserved: true
    zoneRedundant: false
  }
}

module durableTaskScheduler 'app/durable-task-scheduler.bicep' = if (durableBackend == 'DurableTaskScheduler') {
  name: 'durable-task-scheduler'
  scope: rg
  params: {
    name: '${abbrs.durableTaskSchedulers}${resourceToken}'
    location: location
    tags: tags
    skuName: durableTaskSchedulerSku
    capacity: durableTaskSchedulerCapacity
    taskHubName: taskHubName
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    location: location
    tags: union(tags, {
      'azd-service-name': 'api'
    })
    planId: plan.outputs.resourceId
    identityId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    hostStorageName: hostStorage.outputs.name
    deploymentContainerName: deploymentContainerName
    eventHubNamespaceName: eventHubNamespace.outputs.name
    xactEventHubName: eventHubs[0].name
    xactConsumerGroup: eventHubs[0].consumerGroup
    claimxEventHubName: eventHubs[1].name
    claimxConsumerGroup: eventHubs[1].consumerGroup
    appInsightsConnectionString: appInsights.outputs.connectionString
    keyVaultName: keyVault.outputs.name
    lakeTablesUri: effectiveTablesUri
    xactAttachmentsUri: effectiveAttachmentsUri
    claimxAttachmentsUri: effectiveClaimxAttachmentsUri
    claimxEventhouseClusterUrl: claimxEventhouseClusterUrl
    claimxEventhouseDatabase: claimxEventhouseDatabase
    taskHubName: taskHubName
    durableTaskSchedulerEndpoint: durableBackend == 'DurableTaskScheduler' ? durableTaskScheduler.outputs.endpoint : ''
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    durableAlwaysReady: durableAlwaysReady
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
    hostStorageName: hostStorage.outputs.name
    lakeStorageName: useLakeAccount ? lakeAccountName : ''
    eventHubNamespaceName: eventHubNamespace.outputs.name
    keyVaultName: keyVault.outputs.name
    appInsightsName: appInsights.outputs.name
    durableTaskSchedulerName: durableBackend == 'DurableTaskScheduler' ? durableTaskScheduler.outputs.name : ''
  }
  dependsOn: [
    lakeStorage
  ]
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    appInsightsId: appInsights.outputs.resourceId
    logAnalyticsId: logAnalytics.outputs.resourceId
    eventHubNamespaceId: eventHubNamespace.outputs.resourceId
    alertEmail: alertEmail
  }
}

// azd writes these to .azure/<env>/.env; docs/deployment.md uses them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output APP_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output APP_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URI string = keyVault.outputs.uri
output EVENTHUB_NAMESPACE string = '${eventHubNamespace.outputs.name}.servicebus.windows.net'
output HOST_STORAGE_ACCOUNT string = hostStorage.outputs.name
output LAKE_TABLES_URI string = effectiveTablesUri
output XACT_ATTACHMENTS_URI string = effectiveAttachmentsUri
output APPLICATIONINSIGHTS_CONNECTION_STRING string = appInsights.outputs.connectionString
