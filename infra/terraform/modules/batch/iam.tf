# Task roles (one per layer, the same least-privilege split as the IRSA roles: the policies
# of ../layer-access), the task execution role (pulls the image, writes the logs) and the
# scheduler's role (starts tasks).

data "aws_iam_policy_document" "ecs_tasks_trust" {
  statement {
    sid     = "EcsTasksOfThisAccount"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:*"]
    }
  }
}

resource "aws_iam_role" "task" {
  for_each = local.layers

  name                 = "${var.name_prefix}-${each.key}-task"
  description          = "medallion ${each.key} tasks on s3://${var.bucket_name}"
  assume_role_policy   = data.aws_iam_policy_document.ecs_tasks_trust.json
  max_session_duration = 3600
  permissions_boundary = var.permissions_boundary_arn
}

resource "aws_iam_role_policy" "task" {
  for_each = local.layers

  name   = "medallion-${each.key}-lakehouse"
  role   = aws_iam_role.task[each.key].id
  policy = module.layer_access.policy_json[each.key]
}

resource "aws_iam_role" "execution" {
  name                 = "${var.name_prefix}-execution"
  description          = "ECS task execution role of the medallion tasks: image pull and logs"
  assume_role_policy   = data.aws_iam_policy_document.ecs_tasks_trust.json
  max_session_duration = 3600
  permissions_boundary = var.permissions_boundary_arn
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "scheduler_trust" {
  statement {
    sid     = "SchedulerOfThisAccount"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name                 = "${var.name_prefix}-scheduler"
  description          = "EventBridge Scheduler: starts the medallion tasks"
  assume_role_policy   = data.aws_iam_policy_document.scheduler_trust.json
  max_session_duration = 3600
  permissions_boundary = var.permissions_boundary_arn
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid     = "RunTheTaskDefinitionsInTheCluster"
    actions = ["ecs:RunTask"]
    resources = [
      for layer in keys(local.layers) : "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${var.name_prefix}-${layer}:*"
    ]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [local.cluster_arn]
    }
  }

  statement {
    sid       = "PassTheTaskRolesToEcs"
    actions   = ["iam:PassRole"]
    resources = concat([for r in aws_iam_role.task : r.arn], [aws_iam_role.execution.arn])

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  # The schedules' input is encrypted with the module's key; the scheduler decrypts it.
  statement {
    sid       = "DecryptTheScheduleInput"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.batch.arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "medallion-run-tasks"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}
