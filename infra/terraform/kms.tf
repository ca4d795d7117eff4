# Customer-managed key of the lakehouse bucket (SSE-KMS default encryption).
#
# Key policy: the account root administers the key (this also lets IAM policies in the
# account grant its use, which is how the layer roles' own policies take effect); the three
# layer roles may encrypt and decrypt through S3 only; the auditor role, when created, may
# decrypt through S3 only.

locals {
  # The same kms:ViaService (S3 in this region) as the layer roles' own policies.
  kms_via_s3 = module.layer_access.kms_via_service

  layer_role_arns = [for layer in local.layer_names : aws_iam_role.layer[layer].arn]
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:In a key policy, resource "*" means this key only; the statement is the account-root administration AWS requires so the key never becomes unmanageable.
  #checkov:skip=CKV_AWS_111:In a key policy, resource "*" means this key only; write actions are limited to the account root and the layer roles through S3.
  #checkov:skip=CKV_AWS_356:In a key policy, resource "*" means this key only; it cannot name the key's own ARN before the key exists.
  statement {
    sid       = "AccountRootAdministersTheKey"
    effect    = "Allow"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # The actions of the layer policies' UseTheLakehouseKeyThroughS3 (modules/layer-access),
  # written out rather than read from the module: checkov does not resolve that output, and
  # would then skip its IAM checks of this whole key policy.
  statement {
    sid       = "LayerRolesUseTheKeyThroughS3"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = local.layer_role_arns
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via_s3]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:CallerAccount"
      values   = [local.account_id]
    }
  }

  dynamic "statement" {
    for_each = aws_iam_role.auditor
    content {
      sid       = "AuditorDecryptsThroughS3"
      effect    = "Allow"
      actions   = ["kms:Decrypt"]
      resources = ["*"]

      principals {
        type        = "AWS"
        identifiers = [statement.value.arn]
      }

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = [local.kms_via_s3]
      }

      condition {
        test     = "StringEquals"
        variable = "kms:CallerAccount"
        values   = [local.account_id]
      }
    }
  }
}

resource "aws_kms_key" "lakehouse" {
  description             = "SSE-KMS key of the medallion lakehouse bucket ${var.bucket_name}"
  key_usage               = "ENCRYPT_DECRYPT"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "lakehouse" {
  name          = "alias/${var.name_prefix}-lakehouse"
  target_key_id = aws_kms_key.lakehouse.key_id
}
