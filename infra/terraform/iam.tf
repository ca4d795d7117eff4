# One IAM role per layer, assumable only by that layer's Kubernetes service account through
# EKS IAM Roles for Service Accounts (IRSA), with least privilege per prefix. The prefix table
# and the policy are those of modules/layer-access, shared with modules/batch's task roles.

module "layer_access" {
  source = "./modules/layer-access"

  bucket_arn       = aws_s3_bucket.lakehouse.arn
  kms_key_arn      = aws_kms_key.lakehouse.arn
  region           = var.region
  landing_prefix   = var.landing_prefix
  lakehouse_prefix = var.lakehouse_prefix
}

locals {
  # The layers by name, written out: the roles iterate over these rather than over the
  # module's output, so that checkov expands (and checks) each role.
  layer_names = toset(["bronze", "silver", "gold"])
  layers      = { for layer in local.layer_names : layer => module.layer_access.layers[layer] }

  # The OIDC issuer without https://, as IRSA condition keys spell it; the provider ARN ends
  # with exactly that (…:oidc-provider/oidc.eks.<region>.amazonaws.com/id/<id>).
  oidc_issuer = element(split("oidc-provider/", var.eks_oidc_provider_arn), 1)

  service_account_names = { for layer in local.layer_names : layer => "medallion-${layer}" }

  auditor_enabled = length(var.auditor_principal_arns) > 0
}

# ---------------------------------------------------------------------------------------------
# Layer roles
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "layer_trust" {
  for_each = local.layer_names

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
  for_each = local.layer_names

  name                 = "${var.name_prefix}-${each.key}"
  description          = "medallion ${each.key} jobs (service account ${var.namespace}/${local.service_account_names[each.key]}) on s3://${var.bucket_name}"
  assume_role_policy   = data.aws_iam_policy_document.layer_trust[each.key].json
  max_session_duration = 3600
  permissions_boundary = var.permissions_boundary_arn
}

resource "aws_iam_role_policy" "layer" {
  for_each = local.layer_names

  name   = "medallion-${each.key}-lakehouse"
  role   = aws_iam_role.layer[each.key].id
  policy = module.layer_access.policy_json[each.key]
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
