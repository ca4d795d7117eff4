# The Kubernetes side, mirroring the plain manifests in infra/k8s/base/: the namespace, one
# service account per layer (bound to its IAM role through IRSA), the pipeline and
# environment ConfigMaps, and one CronJob per layer. Everything here is gated by
# var.manage_kubernetes.

# Reads the API endpoint and CA of the cluster when they are not given as variables.
data "aws_eks_cluster" "this" {
  count = var.manage_kubernetes && (var.kubernetes_host == null || var.kubernetes_cluster_ca_certificate == null) ? 1 : 0

  name = var.eks_cluster_name

  lifecycle {
    precondition {
      condition     = var.eks_cluster_name != null
      error_message = "eks_cluster_name is required when manage_kubernetes is true and kubernetes_host or kubernetes_cluster_ca_certificate is not set."
    }
  }
}

locals {
  k8s_count  = var.manage_kubernetes ? 1 : 0
  k8s_layers = var.manage_kubernetes ? local.layers : {}

  kubernetes_host = var.kubernetes_host != null ? var.kubernetes_host : one(data.aws_eks_cluster.this[*].endpoint)
  kubernetes_cluster_ca_certificate = (
    var.kubernetes_cluster_ca_certificate != null
    ? base64decode(var.kubernetes_cluster_ca_certificate)
    : (length(data.aws_eks_cluster.this) > 0 ? base64decode(data.aws_eks_cluster.this[0].certificate_authority[0].data) : null)
  )
  kubernetes_token_args = [
    "eks", "get-token",
    "--cluster-name", var.eks_cluster_name == null ? "" : var.eks_cluster_name,
    "--region", var.region,
    "--output", "json",
  ]

  # The namespace, whether created here or already there.
  namespace = try(kubernetes_namespace_v1.medallion[0].metadata[0].name, var.namespace)

  config_mount_path = "/etc/medallion"
  layers_yaml_path  = var.layers_yaml_path != null ? var.layers_yaml_path : "${path.module}/../../layers.yaml"

  env = merge(
    {
      MEDALLION_ROOT       = local.medallion_root
      MEDALLION_LANDING    = local.medallion_landing
      MEDALLION_CONFIG     = "${local.config_mount_path}/layers.yaml"
      MEDALLION_LOG_FORMAT = "json"
      AWS_REGION           = var.region
    },
    var.metrics_push_url == null ? {} : { MEDALLION_METRICS_PUSH = var.metrics_push_url },
  )

  # The container arguments of each layer's job, exactly as in infra/k8s/base/. Kubernetes
  # expands $(JOB_COMPLETION_INDEX) (set on the pods of an Indexed Job) in args.
  job_args = {
    bronze = ["run", "--layer", "bronze", "--shard", "$(JOB_COMPLETION_INDEX)/${var.bronze_shards}"]
    silver = ["run", "--layer", "silver"]
    gold   = ["run", "--layer", "gold"]
  }

  common_labels = {
    "app.kubernetes.io/name"       = "medallion"
    "app.kubernetes.io/part-of"    = "medallion"
    "app.kubernetes.io/managed-by" = "terraform"
  }
}

resource "kubernetes_namespace_v1" "medallion" {
  count = var.manage_kubernetes && var.create_namespace ? 1 : 0

  metadata {
    name = var.namespace
    labels = merge(local.common_labels, {
      # The jobs meet the "restricted" Pod Security Standard; enforce it for the namespace.
      "pod-security.kubernetes.io/enforce"         = "restricted"
      "pod-security.kubernetes.io/enforce-version" = "latest"
      "pod-security.kubernetes.io/audit"           = "restricted"
      "pod-security.kubernetes.io/warn"            = "restricted"
    })
  }
}

resource "kubernetes_service_account_v1" "layer" {
  for_each = local.k8s_layers

  metadata {
    name      = local.service_account_names[each.key]
    namespace = local.namespace
    labels    = merge(local.common_labels, { "app.kubernetes.io/component" = each.key })
    annotations = {
      "eks.amazonaws.com/role-arn" = aws_iam_role.layer[each.key].arn
    }
  }

  # The pods need no Kubernetes API token. The EKS pod identity webhook still projects the
  # web-identity token for AWS (audience sts.amazonaws.com) into pods of this account.
  automount_service_account_token = false
}

resource "kubernetes_config_map_v1" "pipeline" {
  count = local.k8s_count

  metadata {
    name      = "medallion-pipeline"
    namespace = local.namespace
    labels    = local.common_labels
  }

  data = {
    "layers.yaml" = file(local.layers_yaml_path)
  }
}

resource "kubernetes_config_map_v1" "env" {
  count = local.k8s_count

  metadata {
    name      = "medallion-env"
    namespace = local.namespace
    labels    = local.common_labels
  }

  data = local.env

  lifecycle {
    precondition {
      condition     = var.eks_cluster_name != null
      error_message = "eks_cluster_name is required when manage_kubernetes is true: the Kubernetes provider's token comes from `aws eks get-token --cluster-name <eks_cluster_name>`."
    }
  }
}

resource "kubernetes_cron_job_v1" "layer" {
  for_each = local.k8s_layers

  metadata {
    name      = "medallion-${each.key}"
    namespace = local.namespace
    labels    = merge(local.common_labels, { "app.kubernetes.io/component" = each.key })
  }

  spec {
    schedule                      = var.schedules[each.key]
    timezone                      = var.time_zone
    concurrency_policy            = "Forbid"
    starting_deadline_seconds     = 600
    successful_jobs_history_limit = 3
    failed_jobs_history_limit     = 5

    job_template {
      metadata {
        labels = merge(local.common_labels, { "app.kubernetes.io/component" = each.key })
      }

      spec {
        # Bronze runs as an Indexed Job of bronze_shards pods; each ingests the landed files
        # whose path hashes to its index (--shard I/N), and each shard is retried on its own,
        # twice (backoff_limit_per_index). The Job-wide backoff_limit is then left unbounded,
        # as Kubernetes defaults it when backoffLimitPerIndex is set and as the manifest in
        # infra/k8s/base/ leaves it. Silver and Gold run as one pod, retried twice.
        completion_mode         = each.key == "bronze" ? "Indexed" : null
        completions             = each.key == "bronze" ? var.bronze_shards : 1
        parallelism             = each.key == "bronze" ? var.bronze_shards : 1
        backoff_limit_per_index = each.key == "bronze" ? 2 : null
        backoff_limit           = each.key == "bronze" ? 2147483647 : 2

        # A run stuck for an hour is stopped; its partial work stays uncommitted.
        active_deadline_seconds    = 3600
        ttl_seconds_after_finished = "86400"

        # Exit codes 2 (bad configuration or usage) and 3 (data-quality failure) fail the job
        # at once: a retry would fail the same way. Pods evicted or preempted (DisruptionTarget)
        # do not count against backoff_limit; the re-run converges.
        pod_failure_policy {
          rule {
            action = "FailJob"
            on_exit_codes {
              container_name = "medallion"
              operator       = "In"
              values         = [2, 3]
            }
          }
          rule {
            action = "Ignore"
            on_pod_condition {
              type   = "DisruptionTarget"
              status = "True"
            }
          }
        }

        template {
          metadata {
            labels = merge(local.common_labels, { "app.kubernetes.io/component" = each.key })
          }

          spec {
            restart_policy                  = "Never"
            service_account_name            = kubernetes_service_account_v1.layer[each.key].metadata[0].name
            automount_service_account_token = false
            enable_service_links            = false

            security_context {
              run_as_non_root = true
              run_as_user     = "65532"
              run_as_group    = "65532"
              fs_group        = "65532"
              seccomp_profile {
                type = "RuntimeDefault"
              }
            }

            container {
              name              = "medallion"
              image             = var.image
              image_pull_policy = "Always"
              args              = local.job_args[each.key]

              env_from {
                config_map_ref {
                  name = kubernetes_config_map_v1.env[0].metadata[0].name
                }
              }

              resources {
                requests = {
                  cpu    = var.resources[each.key].cpu_request
                  memory = var.resources[each.key].memory_request
                }
                limits = {
                  cpu    = var.resources[each.key].cpu_limit
                  memory = var.resources[each.key].memory_limit
                }
              }

              security_context {
                allow_privilege_escalation = false
                read_only_root_filesystem  = true
                privileged                 = false
                run_as_non_root            = true
                capabilities {
                  drop = ["ALL"]
                }
              }

              volume_mount {
                name       = "pipeline"
                mount_path = local.config_mount_path
                read_only  = true
              }

              volume_mount {
                name       = "tmp"
                mount_path = "/tmp"
              }
            }

            volume {
              name = "pipeline"
              config_map {
                name = kubernetes_config_map_v1.pipeline[0].metadata[0].name
              }
            }

            volume {
              name = "tmp"
              empty_dir {
                size_limit = "1Gi"
              }
            }
          }
        }
      }
    }
  }
}
