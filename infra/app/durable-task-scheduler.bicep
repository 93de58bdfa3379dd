// Optional Durable backend: a Durable Task Scheduler with one task hub named like TASKHUB_NAME.
// Native resources: no Azure Verified Module for the scheduler was available when this was written.

param name string
param location string
param tags object
@allowed([
  'Consumption'
  'Dedicated'
])
param skuName string = 'Consumption'
@minValue(1)
@maxValue(3)
@description('Capacity units; only a Dedicated scheduler has a capacity.')
param capacity int = 1
param taskHubName string

// Only a Dedicated scheduler has capacity units.
var dedicatedSku = {
  name: skuName
  capacity: capacity
}
var consumptionSku = {
  name: skuName
}

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    sku: (skuName == 'Dedicated') ? dedicatedSku : consumptionSku
    // An empty allow-list denies everything; access is controlled by Entra roles (rbac.bicep).
    ipAllowlist: [
      '0.0.0.0/0'
    ]
  }
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' = {
  parent: scheduler
  name: taskHubName
}

output name string = scheduler.name
output endpoint string = scheduler.properties.endpoint
output taskHubName string = taskHub.name
