# The medallion jobs without Kubernetes: EventBridge Scheduler starts ECS Fargate tasks on
# the same schedules, with the same arguments and the same per-layer permissions as the
# CronJobs of the root module.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

module "layer_access" {
  source = "../layer-access"

  bucket_arn       = "arn:${local.partition}:s3:::${var.bucket_name}"
  kms_key_arn      = var.kms_key_arn
  region           = local.region
  landing_prefix   = var.landing_prefix
  lakehouse_prefix = var.lakehouse_prefix
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  # What each layer reads and writes: the same split as the root module's IRSA roles, from
  # the shared module.
  layers = module.layer_access.layers

  # One scheduled run per Bronze shard (ECS has no Indexed Jobs), one each for Silver and Gold.
  runs = merge(
    {
      for i in range(var.bronze_shards) : "bronze-${i}" => {
        layer   = "bronze"
        command = ["run", "--layer", "bronze", "--shard", "${i}/${var.bronze_shards}"]
      }
    },
    {
      silver = { layer = "silver", command = ["run", "--layer", "silver"] }
      gold   = { layer = "gold", command = ["run", "--layer", "gold"] }
    },
  )

  # A task started by hand (without the schedule's override) runs its whole layer; Bronze
  # then ingests every shard's files, which gives the same rows.
  default_commands = {
    bronze = ["run", "--layer", "bronze"]
    silver = ["run", "--layer", "silver"]
    gold   = ["run", "--layer", "gold"]
  }

  environment = concat(
    [
      { name = "MEDALLION_ROOT", value = "s3://${var.bucket_name}/${var.lakehouse_prefix}" },
      { name = "MEDALLION_LANDING", value = "s3://${var.bucket_name}/${var.landing_prefix}" },
      { name = "MEDALLION_LOG_FORMAT", value = "json" },
      { name = "AWS_REGION", value = local.region },
    ],
    var.metrics_push_url == null ? [] : [{ name = "MEDALLION_METRICS_PUSH", value = var.metrics_push_url }],
  )

  # The Pushgateway's port, opened in the security group when metrics are pushed.
  metrics_port = var.metrics_push_url == null ? null : tonumber(
    try(regex("^https?://[^/:]+:([0-9]+)", var.metrics_push_url)[0], startswith(var.metrics_push_url, "https") ? "443" : "80")
  )

  cluster_arn   = var.cluster_arn != null ? var.cluster_arn : aws_ecs_cluster.this[0].arn
  log_group     = "/ecs/${var.name_prefix}"
  log_group_arn = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.log_group}"
}

# ---------------------------------------------------------------------------------------------
# Logs, and the module's key (logs and schedule inputs)
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "batch_kms" {
  #checkov:skip=CKV_AWS_109:In a key policy, resource "*" means this key only; the statement is the account-root administration AWS requires.
  #checkov:skip=CKV_AWS_111:In a key policy, resource "*" means this key only; use is limited to the account root and CloudWatch Logs for this log group.
  #checkov:skip=CKV_AWS_356:A key policy cannot name its own key's ARN before the key exists; "*" is the documented form.
  statement {
    sid       = "AccountRootAdministersTheKey"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncryptsTheJobLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = [local.log_group_arn]
    }
  }
}

resource "aws_kms_key" "batch" {
  description             = "CloudWatch Logs and schedule inputs of the ${var.name_prefix} medallion tasks"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.batch_kms.json
}

resource "aws_cloudwatch_log_group" "jobs" {
  name              = local.log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.batch.arn
}

# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------

resource "aws_security_group" "tasks" {
  #checkov:skip=CKV2_AWS_5:The group is attached to the tasks at run time, through the RunTask request in each schedule's input, which checkov cannot follow.
  name        = "${var.name_prefix}-tasks"
  description = "medallion tasks: no inbound; outbound HTTPS (S3, STS, image registry, logs) and the metrics push port"
  vpc_id      = var.vpc_id

  egress {
    description = "HTTPS to S3, STS, the image registry and CloudWatch Logs"
    protocol    = "tcp"
    from_port   = 443
    to_port     = 443
    cidr_blocks = var.egress_cidr_blocks
  }

  dynamic "egress" {
    for_each = local.metrics_port == null || local.metrics_port == 443 ? [] : [local.metrics_port]
    content {
      description = "Prometheus Pushgateway"
      protocol    = "tcp"
      from_port   = egress.value
      to_port     = egress.value
      cidr_blocks = var.egress_cidr_blocks
    }
  }
}

# ---------------------------------------------------------------------------------------------
# ECS
# ---------------------------------------------------------------------------------------------

resource "aws_ecs_cluster" "this" {
  count = var.cluster_arn == null ? 1 : 0

  name = var.name_prefix

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_task_definition" "layer" {
  for_each = local.layers

  family                   = "${var.name_prefix}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.task_sizes[each.key].cpu)
  memory                   = tostring(var.task_sizes[each.key].memory)
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task[each.key].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # The root filesystem is read-only; /tmp is a task-scoped scratch volume.
  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([
    {
      name                   = "medallion"
      image                  = var.image
      essential              = true
      command                = local.default_commands[each.key]
      environment            = local.environment
      user                   = "65532:65532"
      readonlyRootFilesystem = true
      privileged             = false
      linuxParameters = {
        initProcessEnabled = true
        capabilities       = { drop = ["ALL"] }
      }
      mountPoints = [
        { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
      ]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          "awslogs-group"         = aws_cloudwatch_log_group.jobs.name
          "awslogs-region"        = local.region
          "awslogs-stream-prefix" = each.key
        }
      }
    },
  ])
}

# ---------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------

resource "aws_scheduler_schedule_group" "this" {
  name = var.name_prefix
}

resource "aws_scheduler_schedule" "run" {
  for_each = local.runs

  name                         = "${var.name_prefix}-${each.key}"
  group_name                   = aws_scheduler_schedule_group.this.name
  description                  = "medallion run ${join(" ", each.value.command)}"
  schedule_expression          = var.schedules[each.value.layer]
  schedule_expression_timezone = var.time_zone
  kms_key_arn                  = aws_kms_key.batch.arn

  flexible_time_window {
    mode = "OFF"
  }

  # The universal ECS RunTask target, so that each Bronze shard can carry its own --shard.
  target {
    arn      = "arn:${local.partition}:scheduler:::aws-sdk:ecs:runTask"
    role_arn = aws_iam_role.scheduler.arn

    input = jsonencode({
      Cluster        = local.cluster_arn
      TaskDefinition = aws_ecs_task_definition.layer[each.value.layer].arn
      LaunchType     = "FARGATE"
      Count          = 1
      NetworkConfiguration = {
        AwsvpcConfiguration = {
          Subnets        = var.subnet_ids
          SecurityGroups = [aws_security_group.tasks.id]
          AssignPublicIp = var.assign_public_ip ? "ENABLED" : "DISABLED"
        }
      }
      Overrides = {
        ContainerOverrides = [{ Name = "medallion", Command = each.value.command }]
      }
    })

    # Retries when the task cannot be started (capacity, throttling); a task that starts and
    # fails is not retried here, the next scheduled run converges.
    retry_policy {
      maximum_retry_attempts       = 2
      maximum_event_age_in_seconds = 600
    }
  }
}
