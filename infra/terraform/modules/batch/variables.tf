variable "name_prefix" {
  description = "Prefix of every name this module creates: ECS cluster, task definitions (<prefix>-<layer>), IAM roles, log group, schedule group. Distinct from the Kubernetes deployment's prefix if both exist in one account."
  type        = string
  default     = "medallion-batch"

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{0,31}$", var.name_prefix))
    error_message = "name_prefix must start with a letter and have at most 32 letters, digits and hyphens."
  }
}

variable "image" {
  description = "Container image of medallion, pinned by @sha256: digest or a tag other than latest. The pipeline is the image's /etc/medallion/layers.yaml (build an image FROM it to ship another)."
  type        = string

  validation {
    condition = (
      can(regex("^[^@\\s]+@sha256:[0-9a-f]{64}$", var.image)) || (
        can(regex("^[^@\\s]+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", element(split("/", var.image), length(split("/", var.image)) - 1))) &&
        !endswith(var.image, ":latest")
      )
    )
    error_message = "image must be pinned with @sha256:<digest> or a tag other than latest."
  }
}

variable "bucket_name" {
  description = "The lakehouse bucket (output bucket_name of the root module)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be an S3 bucket name."
  }
}

variable "kms_key_arn" {
  description = "ARN of the bucket's KMS key (output kms_key_arn of the root module). Its key policy delegates to IAM, so the task roles' own policies grant its use."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)."
  }
}

variable "landing_prefix" {
  description = "Landing key prefix in the bucket (no leading or trailing slash)."
  type        = string
  default     = "landing"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9/_.-]*[a-z0-9])?$", var.landing_prefix)) && !can(regex("//", var.landing_prefix))
    error_message = "landing_prefix must be non-empty, without leading or trailing slash or //."
  }
}

variable "lakehouse_prefix" {
  description = "Lakehouse root key prefix in the bucket (no leading or trailing slash)."
  type        = string
  default     = "lakehouse"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9/_.-]*[a-z0-9])?$", var.lakehouse_prefix)) && !can(regex("//", var.lakehouse_prefix))
    error_message = "lakehouse_prefix must be non-empty, without leading or trailing slash or //."
  }
}

variable "cluster_arn" {
  description = "ARN of an existing ECS cluster to run the tasks in. null: the module creates one (Fargate, Container Insights on)."
  type        = string
  default     = null

  validation {
    condition     = var.cluster_arn == null || can(regex("^arn:aws[a-z-]*:ecs:[a-z0-9-]+:[0-9]{12}:cluster/.+$", var.cluster_arn))
    error_message = "cluster_arn must be an ECS cluster ARN, or null."
  }
}

variable "vpc_id" {
  description = "VPC of the subnets; the module's security group is created in it."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must be a VPC id (vpc-...)."
  }
}

variable "subnet_ids" {
  description = "Subnets of the tasks (private subnets with a NAT gateway or VPC endpoints for S3, STS, ECR and CloudWatch Logs)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "subnet_ids must hold at least one subnet id (subnet-...)."
  }
}

variable "assign_public_ip" {
  description = "Give the tasks a public IP (only for public subnets without NAT)."
  type        = bool
  default     = false
}

variable "egress_cidr_blocks" {
  description = "Where the tasks' security group lets them connect (HTTPS, and the metrics push port when metrics_push_url is set): S3, STS, the image registry and CloudWatch Logs."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.egress_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "every egress_cidr_blocks entry must be a CIDR block."
  }
}

variable "cpu_architecture" {
  description = "CPU architecture of the image: X86_64 or ARM64."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "task_sizes" {
  description = "Fargate CPU units and memory (MiB) of each layer's task; they must be a valid Fargate combination (1024 CPU: 2048-8192 MiB; 2048 CPU: 4096-16384 MiB)."
  type = object({
    bronze = optional(object({ cpu = number, memory = number }), { cpu = 1024, memory = 2048 })
    silver = optional(object({ cpu = number, memory = number }), { cpu = 1024, memory = 3072 })
    gold   = optional(object({ cpu = number, memory = number }), { cpu = 1024, memory = 3072 })
  })
  default = {}

  validation {
    condition     = alltrue([for l, s in var.task_sizes : contains([256, 512, 1024, 2048, 4096, 8192, 16384], s.cpu) && s.memory >= 512 && s.memory <= 122880])
    error_message = "cpu must be a Fargate CPU size (256 ... 16384) and memory 512-122880 MiB."
  }
}

variable "bronze_shards" {
  description = "Number of Bronze shards: one scheduled task per shard, each with --shard <i>/<bronze_shards>."
  type        = number
  default     = 4

  validation {
    condition     = var.bronze_shards >= 1 && var.bronze_shards <= 64 && floor(var.bronze_shards) == var.bronze_shards
    error_message = "bronze_shards must be a whole number from 1 to 64."
  }
}

variable "schedules" {
  description = "EventBridge Scheduler expression of each layer (cron with 6 fields, or rate), in time_zone. The defaults match the Kubernetes CronJobs."
  type = object({
    bronze = optional(string, "cron(0/15 * * * ? *)")
    silver = optional(string, "cron(5/15 * * * ? *)")
    gold   = optional(string, "cron(20 * * * ? *)")
  })
  default = {}

  validation {
    condition     = alltrue([for s in values(var.schedules) : can(regex("^(cron\\(\\S+( \\S+){5}\\)|rate\\([0-9]+ (minute|minutes|hour|hours|day|days)\\))$", s))])
    error_message = "each schedule must be cron(<6 fields>) or rate(<n> <unit>), e.g. cron(0/15 * * * ? *)."
  }
}

variable "time_zone" {
  description = "IANA time zone of the schedules."
  type        = string
  default     = "Etc/UTC"

  validation {
    condition     = can(regex("^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", var.time_zone))
    error_message = "time_zone must be an IANA time zone name such as Etc/UTC."
  }
}

variable "metrics_push_url" {
  description = "Prometheus Pushgateway URL (MEDALLION_METRICS_PUSH); null: no push."
  type        = string
  default     = null

  validation {
    condition     = var.metrics_push_url == null || can(regex("^https?://[^\\s/]+", var.metrics_push_url))
    error_message = "metrics_push_url must be an http:// or https:// URL, or null."
  }
}

variable "log_retention_days" {
  description = "Days the jobs' CloudWatch logs are kept."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch Logs retention value (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, ...)."
  }
}

variable "kms_deletion_window_days" {
  description = "Deletion window (7-30 days) of the module's KMS key for the logs."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be from 7 to 30."
  }
}

variable "permissions_boundary_arn" {
  description = "IAM permissions boundary for the roles this module creates; null: none."
  type        = string
  default     = null

  validation {
    condition     = var.permissions_boundary_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:policy/.+$", var.permissions_boundary_arn))
    error_message = "permissions_boundary_arn must be an IAM policy ARN, or null."
  }
}
