variable "subscription_id" {
  description = "Azure subscription to deploy into."
  type        = string
}

variable "environment_name" {
  description = "Short environment name; seeds the resource group name and the unique resource token."
  type        = string
  validation {
    condition     = length(var.environment_name) > 0 && length(var.environment_name) <= 64
    error_message = "environment_name must be 1-64 characters."
  }
}

variable "location" {
  description = "Region for every resource; it must offer Flex Consumption."
  type        = string
}

variable "principal_id" {
  description = "Object id of the deploying user or CI principal. When set, it gets the same data roles as the app (func start with az login) plus Event Hubs Data Sender and Key Vault Secrets Officer."
  type        = string
  default     = ""
}

variable "principal_type" {
  description = "Principal type of principal_id: User or ServicePrincipal."
  type        = string
  default     = "User"
  validation {
    condition     = contains(["User", "ServicePrincipal"], var.principal_type)
    error_message = "principal_type must be User or ServicePrincipal."
  }
}

variable "durable_backend" {
  description = "Durable Functions backend: AzureStorage (host storage account) or DurableTaskScheduler."
  type        = string
  default     = "AzureStorage"
  validation {
    condition     = contains(["AzureStorage", "DurableTaskScheduler"], var.durable_backend)
    error_message = "durable_backend must be AzureStorage or DurableTaskScheduler."
  }
}

variable "durable_task_scheduler_sku" {
  description = "Durable Task Scheduler SKU: Consumption or Dedicated."
  type        = string
  default     = "Consumption"
  validation {
    condition     = contains(["Consumption", "Dedicated"], var.durable_task_scheduler_sku)
    error_message = "durable_task_scheduler_sku must be Consumption or Dedicated."
  }
}

variable "durable_task_scheduler_capacity" {
  description = "Capacity units of a Dedicated Durable Task Scheduler (1-3); ignored by Consumption."
  type        = number
  default     = 1
  validation {
    condition     = var.durable_task_scheduler_capacity >= 1 && var.durable_task_scheduler_capacity <= 3
    error_message = "durable_task_scheduler_capacity must be between 1 and 3."
  }
}

variable "lake_tables_uri" {
  description = "abfss:// URI of the Delta tables folder (OneLake or ADLS Gen2). Empty: an ADLS Gen2 lake account is created and used."
  type        = string
  default     = ""
}

variable "xact_attachments_uri" {
  description = "abfss:// URI of the XACT attachment folder. Empty: derived from the tables URI (Tables -> Files/xact/attachments)."
  type        = string
  default     = ""
}

variable "claimx_attachments_uri" {
  description = "abfss:// URI of the ClaimX media folder. Empty: derived from the tables URI (Tables -> Files/claimx/attachments)."
  type        = string
  default     = ""
}

variable "claimx_eventhouse_cluster_url" {
  description = "Eventhouse (Kusto) cluster URL holding the ClaimX events table. Empty leaves the ClaimX poller off."
  type        = string
  default     = ""
}

variable "claimx_eventhouse_database" {
  description = "Eventhouse database of the ClaimX events table."
  type        = string
  default     = ""
}

variable "eventhub_partition_count" {
  description = "Partitions per event hub; caps the Event Hub trigger scale-out and cannot be changed later on Standard."
  type        = number
  default     = 4
}

variable "eventhub_capacity" {
  description = "Event Hubs throughput units (Standard tier)."
  type        = number
  default     = 1
}

variable "maximum_instance_count" {
  description = "Flex Consumption maximum instance count."
  type        = number
  default     = 100
}

variable "instance_memory_in_mb" {
  description = "Flex Consumption instance memory: 2048 or 4096."
  type        = number
  default     = 2048
}

variable "durable_always_ready" {
  description = "Always-ready instances for the durable trigger group."
  type        = number
  default     = 1
}

variable "python_version" {
  description = "Python version of the Flex runtime."
  type        = string
  default     = "3.11"
}

variable "task_hub_name" {
  description = "Durable task hub name (letters and digits)."
  type        = string
  default     = "claimsflow"
}

variable "alert_email" {
  description = "E-mail address the alerts notify (action group receiver). Empty: alerts fire without notifying anyone."
  type        = string
  default     = ""
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}
