terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.40"
    }
    # 2.33 is the first with both `pod_failure_policy` and `backoff_limit_per_index` in Job
    # specs (the CronJob `timezone` field is older).
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.33"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = var.tags
  }
}

# The Kubernetes provider talks to the EKS cluster that runs the jobs. The API endpoint and
# CA come from the variables when set, otherwise from the cluster itself (`eks_cluster_name`).
# The token is a short-lived one from `aws eks get-token` (AWS CLI v2 on the machine running
# Terraform), so no kubeconfig or long-lived credential is needed. With
# `manage_kubernetes = false` nothing uses this provider and the cluster is never contacted.
provider "kubernetes" {
  host                   = local.kubernetes_host
  cluster_ca_certificate = local.kubernetes_cluster_ca_certificate

  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = local.kubernetes_token_args
  }
}
