# One IAM role per layer, assumable only by that layer's Kubernetes service account through
# EKS IAM Roles for Service Accounts (IRSA), with least privilege per prefix:
#
#   layer   reads (Get + List)     reads and writes (Get, Put, Delete + List)
#   bronze  LANDING                ROOT/bronze (tables and quarantines), ROOT/_system
#   silver  ROOT/bronze            ROOT/silver (tables and quarantines), ROOT/_system
#   gold    ROOT/silver            ROOT/gold (tables, SQL models over Gold, _touchpoints), ROOT/_system
#
# Every layer appends to the run log (ROOT/_system/runs) and writes its runs' OpenLineage
# events (ROOT/_system/openlineage/), so all three write ROOT/_system.

locals {
  layers = {
    bronze = {
      read_prefixes  = [local.landing_prefix]
      write_prefixes = ["${local.lakehouse_prefix}/bronze", local.system_prefix]
    }
    silver = {
      read_prefixes  = ["${local.lakehouse_prefix}/bronze"]
      write_prefixes = ["${local.lakehouse_prefix}/silver", local.system_prefix]
    }
    gold = {
      read_prefixes  = ["${local.lakehouse_prefix}/silver"]
      write_prefixes = ["${local.lakehouse_prefix}/gold", local.system_prefix]
    }
  }

  # The OIDC issuer without https://, as IRSA condition keys spell it; the provider ARN ends
  # with exactly that (…:oidc-provider/oidc.eks.<region>.amazonaws.com/id/<id>).
  oidc_issuer = element(split("oidc-provider/", var.eks_oidc_provider_arn), 1)

  service_account_names = { for layer in keys(local.layers) : layer => "medallion-${layer}" }

  # ListBucket is limited with s3:prefix: the engine lists "P", "P/" and keys under "P/".
  list_patterns = {
    for layer, l in local.layers : layer => flatten([
      for p in concat(l.read_prefixes, l.write_prefixes) : [p, "${p}/", "${p}/*"]
    ])
  }

  auditor_enabled = length(var.auditor_principal_arns) > 0
}

# ---------------------------------------------------------------------------------------------
# Layer roles
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "layer_trust" {
  for_each = local.layers

  statement {
    sid     = "ServiceAccountMedallion${title(each.key)}ViaIrsa"
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.eks_oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${local.service_account_names[each.key]}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "layer" {
  for_each = local.layers

  name                 = "${var.name_prefix}-${each.key}"
  description          = "medallion ${each.key} jobs (service account ${var.namespace}/${local.service_account_names[each.key]}) on s3://${var.bucket_name}"
  assume_role_policy   = data.aws_iam_policy_document.layer_trust[each.key].json
  max_session_duration = 3600
  permissions_boundary = var.permissions_boundary_arn
}

data "aws_iam_policy_document" "layer" {
  for_each = local.layers

  statement {
    sid       = "ListOwnPrefixes"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lakehouse.arn]

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
    resources = [for p in each.value.read_prefixes : "${aws_s3_bucket.lakehouse.arn}/${p}/*"]
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
    resources = [for p in each.value.write_prefixes : "${aws_s3_bucket.lakehouse.arn}/${p}/*"]
  }

  statement {
    sid       = "UseTheLakehouseKeyThroughS3"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.lakehouse.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via_s3]
    }
  }
}

resource "aws_iam_role_policy" "layer" {
  for_each = local.layers

  name   = "medallion-${each.key}-lakehouse"
  role   = aws_iam_role.layer[each.key].id
  policy = data.aws_iam_policy_document.layer[each.key].json
}

# ---------------------------------------------------------------------------------------------
# Optional read-only auditor role (created when auditor_principal_arns is not empty)
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "auditor_trust" {
  count = local.auditor_enabled ? 1 : 0

  statement {
    sid     = "AuditorPrincipals"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "AWS"
      identifiers = var.auditor_principal_arns
    }
  }
}

resource "aws_iam_role" "auditor" {
  count = local.auditor_enabled ? 1 : 0

  name                 = "${var.name_prefix}-auditor"
  description          = "Read-only access to the landing files and every table of s3://${var.bucket_name} (lineage, history, query)"
  assume_role_policy   = data.aws_iam_policy_document.auditor_trust[0].json
  max_session_duration = 3600
  permissions_boundary = var.permissions_boundary_arn
}

data "aws_iam_policy_document" "auditor" {
  count = local.auditor_enabled ? 1 : 0

  statement {
    sid       = "ListLandingAndLakehouse"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lakehouse.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values = flatten([
        for p in [local.landing_prefix, local.lakehouse_prefix] : [p, "${p}/", "${p}/*"]
      ])
    }
  }

  statement {
    sid     = "ReadLandingAndLakehouse"
    effect  = "Allow"
    actions = ["s3:GetObject"]
    resources = [
      "${aws_s3_bucket.lakehouse.arn}/${local.landing_prefix}/*",
      "${aws_s3_bucket.lakehouse.arn}/${local.lakehouse_prefix}/*",
    ]
  }

  statement {
    sid       = "DecryptThroughS3"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.lakehouse.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via_s3]
    }
  }
}

resource "aws_iam_role_policy" "auditor" {
  count = local.auditor_enabled ? 1 : 0

  name   = "medallion-auditor-read-only"
  role   = aws_iam_role.auditor[0].id
  policy = data.aws_iam_policy_document.auditor[0].json
}
