# What each layer's jobs may do on the lakehouse bucket and its key: the least-privilege
# split by prefix that the root module's IRSA roles and the batch module's ECS task roles
# both get, written once here.
#
#   layer   reads (Get + List)     reads and writes (Get, Put, Delete + List)
#   bronze  LANDING                ROOT/bronze (tables and quarantines), ROOT/_system
#   silver  ROOT/bronze            ROOT/silver (tables and quarantines), ROOT/_system
#   gold    ROOT/silver            ROOT/gold (tables, SQL models over Gold, _touchpoints), ROOT/_system
#
# Every layer appends to the run log (ROOT/_system/runs) and writes its runs' OpenLineage
# events (ROOT/_system/openlineage/), so all three write ROOT/_system.

locals {
  system_prefix = "${var.lakehouse_prefix}/_system"

  layers = {
    bronze = {
      read_prefixes  = [var.landing_prefix]
      write_prefixes = ["${var.lakehouse_prefix}/bronze", local.system_prefix]
    }
    silver = {
      read_prefixes  = ["${var.lakehouse_prefix}/bronze"]
      write_prefixes = ["${var.lakehouse_prefix}/silver", local.system_prefix]
    }
    gold = {
      read_prefixes  = ["${var.lakehouse_prefix}/silver"]
      write_prefixes = ["${var.lakehouse_prefix}/gold", local.system_prefix]
    }
  }

  # ListBucket is limited with s3:prefix: the engine lists "P", "P/" and keys under "P/".
  list_patterns = {
    for layer, l in local.layers : layer => flatten([
      for p in concat(l.read_prefixes, l.write_prefixes) : [p, "${p}/", "${p}/*"]
    ])
  }

  # The key is usable only through S3 (SSE-KMS data keys), never directly.
  kms_via_service = "s3.${var.region}.amazonaws.com"
}

data "aws_iam_policy_document" "layer" {
  for_each = local.layers

  statement {
    sid       = "ListOwnPrefixes"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = local.list_patterns[each.key]
    }
  }

  statement {
    sid       = "ReadInputs"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = [for p in each.value.read_prefixes : "${var.bucket_arn}/${p}/*"]
  }

  statement {
    sid    = "ReadWriteOwnLayerAndSystem"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
    ]
    resources = [for p in each.value.write_prefixes : "${var.bucket_arn}/${p}/*"]
  }

  statement {
    sid       = "UseTheLakehouseKeyThroughS3"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via_service]
    }
  }
}
