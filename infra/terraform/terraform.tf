terraform {
  required_version = ">= 1.9, < 2.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 4.45, < 5.0"
    }
    azapi = {
      source = "Azure/azapi"
      # 2.8 is the first release whose embedded schemas know Microsoft.DurableTask@2025-11-01.
      version = ">= 2.8, < 3.0"
    }
  }
}

provider "azurerm" {
  features {
    key_vault {
      purge_soft_delete_on_destroy = false
    }
  }
  # Shared-key access is disabled on every storage account: data-plane calls use Entra ID.
  storage_use_azuread = true
  subscription_id     = var.subscription_id
}

provider "azapi" {
  subscription_id = var.subscription_id
}
