// Every role assignment in one place: the app's identity gets exactly the data roles its code needs,
// and the deploying principal (optional) gets the same ones plus what a developer needs to operate
// (send test events, set secrets). tests/infra/test_roles.py checks this file against the data map.

param appPrincipalId string
@description('Deploying user or CI principal; empty skips every user assignment.')
param userPrincipalId string = ''
param userPrincipalType string = 'User'
param hostStorageName string
@description('ADLS Gen2 lake account; empty when the lake is OneLake (granted in Fabric instead).')
param lakeStorageName string = ''
param eventHubNamespaceName string
param keyVaultName string
param appInsightsName string
@description('Durable Task Scheduler; empty with the Azure Storage backend.')
param durableTaskSchedulerName string = ''

// Built-in role definition ids.
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
  eventHubsDataSender: '2b629674-e913-4c01-ae53-ef4638d8f975'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  durableTaskDataContributor: '0ad04412-c4d5-4796-b79c-f76d14c8d402'
}

var withUser = !empty(userPrincipalId)
var withLake = !empty(lakeStorageName)
var withScheduler = !empty(durableTaskSchedulerName)

resource hostStorage 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: hostStorageName
}

resource lakeStorage 'Microsoft.Storage/storageAccounts@2024-01-01' existing = if (withLake) {
  name: withLake ? lakeStorageName : 'unused'
}

resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName
}

resource keyVault 'Microsoft.KeyVault/vaults@2024-11-01' existing = {
  name: keyVaultName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' existing = if (withScheduler) {
  name: withScheduler ? durableTaskSchedulerName : 'unused'
}

// ---- the app's identity -------------------------------------------------------------------

// Host storage blobs: host locks, Event Hub checkpoints, deployment package, Durable large
// messages and leases, the app's leases/locks containers (Owner: the host manages containers).
resource appHostBlob 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, appPrincipalId, roles.storageBlobDataOwner)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Host storage queues: Durable control and work-item queues.
resource appHostQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, appPrincipalId, roles.storageQueueDataContributor)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Host storage tables: Durable History/Instances, dedup latch, staging, dead letters.
resource appHostTable 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, appPrincipalId, roles.storageTableDataContributor)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Lake: Delta tables (object_store) and attachment files (Blob API).
resource appLakeBlob 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withLake) {
  name: guid(lakeStorage.id, appPrincipalId, roles.storageBlobDataContributor)
  scope: lakeStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Event Hub triggers read both hubs through their consumer groups.
resource appEventHubReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventHubNamespace.id, appPrincipalId, roles.eventHubsDataReceiver)
  scope: eventHubNamespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Key Vault references (ClaimX token, plugin secrets).
resource appKeyVaultSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, appPrincipalId, roles.keyVaultSecretsUser)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Entra-authenticated telemetry ingestion.
resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appScheduler 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withScheduler) {
  name: guid(scheduler.id, appPrincipalId, roles.durableTaskDataContributor)
  scope: scheduler
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.durableTaskDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---- the deploying principal (func start with az login, ops CLI) ---------------------------

resource userHostBlob 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withUser) {
  name: guid(hostStorage.id, userPrincipalId, roles.storageBlobDataOwner)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userHostQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withUser) {
  name: guid(hostStorage.id, userPrincipalId, roles.storageQueueDataContributor)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userHostTable 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withUser) {
  name: guid(hostStorage.id, userPrincipalId, roles.storageTableDataContributor)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userLakeBlob 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withUser && withLake) {
  name: guid(lakeStorage.id, userPrincipalId, roles.storageBlobDataContributor)
  scope: lakeStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userEventHubReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withUser) {
  name: guid(eventHubNamespace.id, userPrincipalId, roles.eventHubsDataReceiver)
  scope: eventHubNamespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

// Developers send test events to the hubs.
resource userEventHubSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withUser) {
  name: guid(eventHubNamespace.id, userPrincipalId, roles.eventHubsDataSender)
  scope: eventHubNamespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataSender)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

// Developers set and rotate secrets (docs/deployment.md, "Rotate the ClaimX token").
resource userKeyVaultSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withUser) {
  name: guid(keyVault.id, userPrincipalId, roles.keyVaultSecretsOfficer)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withUser) {
  name: guid(appInsights.id, userPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userScheduler 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withUser && withScheduler) {
  name: guid(scheduler.id, userPrincipalId, roles.durableTaskDataContributor)
  scope: scheduler
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.durableTaskDataContributor)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}
