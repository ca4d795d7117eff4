# ---------------------------------------------------------------------------------------------
# AWS: account placement and naming
# ---------------------------------------------------------------------------------------------

variable "region" {
  description = "AWS region of the lakehouse bucket, the KMS key and the EKS cluster (e.g. eu-west-1). Also written to the jobs as AWS_REGION."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]+$", var.region))
    error_message = "region must be an AWS region code such as eu-west-1 or us-gov-west-1."
  }
}

variable "name_prefix" {
  description = "Prefix of the names of the IAM roles (<prefix>-bronze, -silver, -gold, -auditor) and of the KMS alias (alias/<prefix>-lakehouse). Use a different prefix for each deployment in one account."
  type        = string
  default     = "medallion"

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{0,39}$", var.name_prefix))
    error_message = "name_prefix must start with a letter and have at most 40 letters, digits and hyphens (IAM role names are limited to 64 characters)."
  }
}

variable "tags" {
  description = "Tags added to every AWS resource (through the provider's default_tags)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.tags : length(k) >= 1 && length(k) <= 128 && length(v) <= 256 && !startswith(lower(k), "aws:")])
    error_message = "tag keys must be 1-128 characters and must not start with aws:; values at most 256 characters."
  }
}

variable "permissions_boundary_arn" {
  description = "ARN of an IAM permissions boundary to set on every role this module creates, when the account requires one. null: no boundary."
  type        = string
  default     = null

  validation {
    condition     = var.permissions_boundary_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:policy/.+$", var.permissions_boundary_arn))
    error_message = "permissions_boundary_arn must be an IAM policy ARN (arn:aws:iam::123456789012:policy/...)."
  }
}

# ---------------------------------------------------------------------------------------------
# Bucket and layout
# ---------------------------------------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the S3 bucket created for the landing files and the lakehouse (globally unique)."
  type        = string

  validation {
    condition = (
      can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.bucket_name)) &&
      !startswith(var.bucket_name, "xn--") &&
      !startswith(var.bucket_name, "sthree-") &&
      !endswith(var.bucket_name, "-s3alias") &&
      !endswith(var.bucket_name, "--ol-s3") &&
      !endswith(var.bucket_name, "--x-s3")
    )
    error_message = "bucket_name must follow the S3 naming rules: 3-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit, not starting with xn-- or sthree-, not ending with -s3alias, --ol-s3 or --x-s3. Dots are refused: they break TLS certificate checks with virtual-hosted-style addressing, and this bucket accepts TLS only."
  }
}

variable "landing_prefix" {
  description = "Key prefix (no leading or trailing slash) under which raw files land: MEDALLION_LANDING = s3://<bucket>/<landing_prefix>. Only the Bronze role (and the auditor) read it."
  type        = string
  default     = "landing"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9/_.-]*[a-z0-9])?$", var.landing_prefix)) && !can(regex("//", var.landing_prefix))
    error_message = "landing_prefix must be non-empty, use lowercase letters, digits, '/', '_', '.' and '-', start and end with a letter or digit (no leading or trailing slash) and contain no empty segment (//)."
  }
}

variable "lakehouse_prefix" {
  description = "Key prefix (no leading or trailing slash) of the lakehouse root: MEDALLION_ROOT = s3://<bucket>/<lakehouse_prefix>. The tables live in <prefix>/bronze, <prefix>/silver, <prefix>/gold and the run log in <prefix>/_system."
  type        = string
  default     = "lakehouse"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9/_.-]*[a-z0-9])?$", var.lakehouse_prefix)) && !can(regex("//", var.lakehouse_prefix))
    error_message = "lakehouse_prefix must be non-empty, use lowercase letters, digits, '/', '_', '.' and '-', start and end with a letter or digit (no leading or trailing slash) and contain no empty segment (//)."
  }
}

variable "noncurrent_version_days" {
  description = "Days a noncurrent (overwritten or deleted) object version is kept before the lifecycle rule expires it. Live objects never expire by lifecycle."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_days >= 1 && floor(var.noncurrent_version_days) == var.noncurrent_version_days
    error_message = "noncurrent_version_days must be a whole number of days, at least 1."
  }
}

variable "access_log_bucket" {
  description = "Name of an existing bucket that receives S3 server access logs of the lakehouse bucket (it must allow delivery by logging.s3.amazonaws.com). null: no access logging."
  type        = string
  default     = null

  validation {
    condition     = var.access_log_bucket == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.access_log_bucket))
    error_message = "access_log_bucket must be an S3 bucket name, or null."
  }
}

variable "access_log_prefix" {
  description = "Key prefix of the access log objects in access_log_bucket. null: \"<bucket_name>/\"."
  type        = string
  default     = null

  validation {
    condition     = var.access_log_prefix == null || can(regex("^[A-Za-z0-9!_.*'()/-]{1,512}$", var.access_log_prefix))
    error_message = "access_log_prefix must be 1-512 characters of a safe S3 key (letters, digits, and !_.*'()/-)."
  }
}

variable "kms_deletion_window_days" {
  description = "Waiting period (7-30 days) before the customer-managed KMS key is deleted after a destroy. Data encrypted with a deleted key is lost for good."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30 && floor(var.kms_deletion_window_days) == var.kms_deletion_window_days
    error_message = "kms_deletion_window_days must be a whole number from 7 to 30."
  }
}

# ---------------------------------------------------------------------------------------------
# Identity: EKS IRSA and the optional auditor role
# ---------------------------------------------------------------------------------------------

variable "eks_oidc_provider_arn" {
  description = "ARN of the IAM OIDC provider of the EKS cluster (arn:aws:iam::<account>:oidc-provider/oidc.eks.<region>.amazonaws.com/id/<id>). The layer roles trust it for their service accounts only; the issuer is taken from the ARN."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/[^/]+/.+$", var.eks_oidc_provider_arn))
    error_message = "eks_oidc_provider_arn must be an IAM OIDC provider ARN: arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE."
  }
}

variable "auditor_principal_arns" {
  description = "IAM principals (role or user ARNs) allowed to assume a read-only auditor role over the landing and lakehouse prefixes, e.g. for `medallion lineage trace` and `medallion query`. Empty: the auditor role is not created."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.auditor_principal_arns : can(regex("^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:.+$", a))])
    error_message = "every auditor_principal_arns entry must be an IAM or STS ARN starting with arn:."
  }
}

# ---------------------------------------------------------------------------------------------
# Kubernetes (EKS)
# ---------------------------------------------------------------------------------------------

variable "manage_kubernetes" {
  description = "Create the Kubernetes objects (namespace, service accounts, ConfigMaps, CronJobs) through the kubernetes provider. false: only the AWS side is created, and the manifests in infra/k8s/ are applied some other way."
  type        = bool
  default     = true
}

variable "eks_cluster_name" {
  description = "Name of the EKS cluster that runs the jobs. Used for the API token (`aws eks get-token`) and, when kubernetes_host or kubernetes_cluster_ca_certificate is null, to read them from the cluster. Required when manage_kubernetes is true."
  type        = string
  default     = null

  validation {
    condition     = var.eks_cluster_name == null || can(regex("^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$", var.eks_cluster_name))
    error_message = "eks_cluster_name must be an EKS cluster name (1-100 letters, digits, hyphens and underscores, starting with a letter or digit)."
  }
}

variable "kubernetes_host" {
  description = "HTTPS endpoint of the Kubernetes API server. null: read from the EKS cluster eks_cluster_name."
  type        = string
  default     = null

  validation {
    condition     = var.kubernetes_host == null || can(regex("^https://", var.kubernetes_host))
    error_message = "kubernetes_host must be an https:// URL, or null."
  }
}

variable "kubernetes_cluster_ca_certificate" {
  description = "Base64-encoded PEM CA certificate of the Kubernetes API server, as `aws eks describe-cluster` prints it (certificateAuthority.data). null: read from the EKS cluster eks_cluster_name."
  type        = string
  default     = null

  validation {
    condition     = var.kubernetes_cluster_ca_certificate == null || can(base64decode(var.kubernetes_cluster_ca_certificate))
    error_message = "kubernetes_cluster_ca_certificate must be base64-encoded (the certificateAuthority.data of the cluster), or null."
  }
}

variable "create_namespace" {
  description = "Create the namespace. false: it already exists (created by the platform team) and only the objects inside it are managed."
  type        = bool
  default     = true
}

variable "namespace" {
  description = "Kubernetes namespace of the jobs. The layer roles trust exactly the service accounts system:serviceaccount:<namespace>:medallion-<layer>."
  type        = string
  default     = "medallion"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a DNS-1123 label: at most 63 lowercase letters, digits and hyphens, starting and ending with a letter or digit."
  }
}

variable "image" {
  description = "Container image of medallion, pinned: by digest (registry/medallion@sha256:...) or by a version tag (registry/medallion:0.1.0). `latest` and untagged images are refused."
  type        = string

  validation {
    condition = (
      can(regex("^[^@\\s]+@sha256:[0-9a-f]{64}$", var.image)) || (
        can(regex("^[^@\\s]+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", element(split("/", var.image), length(split("/", var.image)) - 1))) &&
        !endswith(var.image, ":latest")
      )
    )
    error_message = "image must be pinned with @sha256:<digest> or a tag other than latest (e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/medallion:0.1.0)."
  }
}

variable "layers_yaml_path" {
  description = "Path of the pipeline file put into the medallion-pipeline ConfigMap (key layers.yaml, mounted at /etc/medallion/layers.yaml). null: the repository's layers.yaml (<module>/../../layers.yaml)."
  type        = string
  default     = null

  validation {
    condition     = var.layers_yaml_path == null || can(regex("\\.ya?ml$", var.layers_yaml_path))
    error_message = "layers_yaml_path must name a .yaml or .yml file, or be null."
  }
}

variable "metrics_push_url" {
  description = "Prometheus Pushgateway the jobs push their metrics to (MEDALLION_METRICS_PUSH, e.g. http://pushgateway.monitoring:9091). null: no push."
  type        = string
  default     = null

  validation {
    condition     = var.metrics_push_url == null || can(regex("^https?://[^\\s/]+", var.metrics_push_url))
    error_message = "metrics_push_url must be an http:// or https:// URL, or null."
  }
}

variable "bronze_shards" {
  description = "Number of shards of the Bronze job: completions and parallelism of its Indexed Job; each pod runs `--shard $(JOB_COMPLETION_INDEX)/<bronze_shards>`."
  type        = number
  default     = 4

  validation {
    condition     = var.bronze_shards >= 1 && var.bronze_shards <= 64 && floor(var.bronze_shards) == var.bronze_shards
    error_message = "bronze_shards must be a whole number from 1 to 64."
  }
}

variable "schedules" {
  description = "Cron schedule (5 fields, in time_zone) of each layer's CronJob. Silver and Gold are offset so they usually start after the layer they read has committed; they read whatever is committed, so any order is correct."
  type = object({
    bronze = optional(string, "*/15 * * * *")
    silver = optional(string, "5-59/15 * * * *")
    gold   = optional(string, "20 * * * *")
  })
  default = {}

  validation {
    condition     = alltrue([for s in values(var.schedules) : can(regex("^\\S+(\\s+\\S+){4}$", trimspace(s)))])
    error_message = "each schedule must be a cron expression with exactly 5 fields (minute hour day-of-month month day-of-week), e.g. \"*/15 * * * *\"."
  }
}

variable "time_zone" {
  description = "IANA time zone of the CronJob schedules."
  type        = string
  default     = "Etc/UTC"

  validation {
    condition     = can(regex("^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", var.time_zone))
    error_message = "time_zone must be an IANA time zone name such as Etc/UTC or Europe/Paris."
  }
}

variable "resources" {
  description = "CPU and memory requests and limits of each layer's container (Kubernetes quantities). Memory stays bounded by batch and row-group sizes, not by input size."
  type = object({
    bronze = optional(object({
      cpu_request    = optional(string, "1")
      memory_request = optional(string, "1Gi")
      cpu_limit      = optional(string, "2")
      memory_limit   = optional(string, "2Gi")
    }), {})
    silver = optional(object({
      cpu_request    = optional(string, "1")
      memory_request = optional(string, "2Gi")
      cpu_limit      = optional(string, "2")
      memory_limit   = optional(string, "3Gi")
    }), {})
    gold = optional(object({
      cpu_request    = optional(string, "1")
      memory_request = optional(string, "2Gi")
      cpu_limit      = optional(string, "2")
      memory_limit   = optional(string, "3Gi")
    }), {})
  })
  default = {}

  validation {
    condition = alltrue(flatten([
      for layer, r in var.resources : [
        can(regex("^[0-9]+(\\.[0-9]+)?m?$", r.cpu_request)),
        can(regex("^[0-9]+(\\.[0-9]+)?m?$", r.cpu_limit)),
        can(regex("^[0-9]+(\\.[0-9]+)?([KMGTPE]i?)?$", r.memory_request)),
        can(regex("^[0-9]+(\\.[0-9]+)?([KMGTPE]i?)?$", r.memory_limit)),
      ]
    ]))
    error_message = "cpu quantities look like \"1\", \"0.5\" or \"500m\"; memory quantities like \"2Gi\" or \"512Mi\"."
  }
}
