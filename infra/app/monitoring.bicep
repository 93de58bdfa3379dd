// Dashboards and alerts: the pipeline workbook, one log alert per rule in ../monitoring/alerts.json,
// and the action group they notify. The rules, their KQL and the workbook are shared files that
// infra/terraform/monitoring.tf reads too (tests/infra/test_infra_monitoring.py keeps both in step).
// Native resources: the queries are loaded from files, which the AVM alert modules do not take.

param location string
param tags object
@description('Application Insights component receiving the app telemetry (customMetrics).')
param appInsightsId string
@description('Log Analytics workspace receiving the Event Hubs platform metrics (AzureMetrics).')
param logAnalyticsId string
@description('Event Hubs namespace shown in the workbook.')
param eventHubNamespaceId string
@description('E-mail address notified by every alert; empty: the action group has no receivers.')
param alertEmail string = ''

var alertRules = loadJsonContent('../monitoring/alerts.json').alerts
// One entry per rule key: Bicep loads files only from literal paths.
var alertQueries = {
  'deadletter-growth': loadTextContent('../monitoring/alerts/deadletter-growth.kql')
  'staging-backlog-age': loadTextContent('../monitoring/alerts/staging-backlog-age.kql')
  'failed-instances': loadTextContent('../monitoring/alerts/failed-instances.kql')
  'flush-failures': loadTextContent('../monitoring/alerts/flush-failures.kql')
  'eventhub-lag': loadTextContent('../monitoring/alerts/eventhub-lag.kql')
}
var alertScopes = {
  appInsights: appInsightsId
  logAnalytics: logAnalyticsId
}
var workbookWithAppInsights = replace(loadTextContent('../monitoring/workbook.json'), '__APP_INSIGHTS_ID__', appInsightsId)
var workbookData = replace(workbookWithAppInsights, '__EVENTHUB_NAMESPACE_ID__', eventHubNamespaceId)

resource onCall 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-claimsflow'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'claimsflow'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'on-call'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource alerts 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in alertRules: {
    name: 'claimsflow-${rule.key}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        alertScopes[rule.source]
      ]
      evaluationFrequency: rule.evaluationFrequency
      windowSize: rule.windowSize
      skipQueryValidation: rule.skipQueryValidation
      autoMitigate: true
      criteria: {
        allOf: [
          {
            query: alertQueries[rule.key]
            timeAggregation: rule.timeAggregation
            metricMeasureColumn: rule.metricMeasureColumn
            operator: rule.operator
            threshold: rule.threshold
            dimensions: [
              for dimension in rule.dimensions: {
                name: dimension
                operator: 'Include'
                values: [
                  '*'
                ]
              }
            ]
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      actions: {
        actionGroups: [
          onCall.id
        ]
      }
    }
  }
]

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'claimsflow-pipeline-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'claimsflow pipeline'
    category: 'workbook'
    sourceId: toLower(appInsightsId)
    serializedData: workbookData
  }
}

output actionGroupId string = onCall.id
output workbookId string = workbook.id
output alertRuleNames array = [for (rule, i) in alertRules: alerts[i].name]
