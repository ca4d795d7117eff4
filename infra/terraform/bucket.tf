# The lakehouse bucket: landing files and every Delta table of the pipeline.
#
# Layout (ROOT = s3://<bucket>/<lakehouse_prefix>, LANDING = s3://<bucket>/<landing_prefix>):
#
#   LANDING/<source folder>/...            raw files (events/, ad_spend/, campaigns/, fx_rates/)
#   ROOT/bronze/<table>                    Bronze tables; quarantines in ROOT/bronze/_quarantine/<table>
#   ROOT/silver/<table>                    Silver tables; quarantines in ROOT/silver/_quarantine/<table>
#   ROOT/gold/<table>                      Gold tables; attribution touchpoints in ROOT/gold/_touchpoints/
#   ROOT/_system/runs                      run log (Delta), appended to by every layer
#   ROOT/_system/openlineage/<run>.ndjson  OpenLineage events of each run, written by every layer

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  landing_prefix   = var.landing_prefix
  lakehouse_prefix = var.lakehouse_prefix

  medallion_root    = "s3://${var.bucket_name}/${var.lakehouse_prefix}"
  medallion_landing = "s3://${var.bucket_name}/${var.landing_prefix}"

  # Neither prefix may contain the other: the Bronze role reads landing files only, and no
  # role may read or overwrite tables through the landing prefix (or the reverse).
  prefixes_overlap = (
    var.landing_prefix == var.lakehouse_prefix ||
    startswith("${var.landing_prefix}/", "${var.lakehouse_prefix}/") ||
    startswith("${var.lakehouse_prefix}/", "${var.landing_prefix}/")
  )
}

resource "aws_s3_bucket" "lakehouse" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice (second region, second key, cost) left to the operator; see README.
  #checkov:skip=CKV2_AWS_62:The jobs run on a schedule and list the landing prefix themselves; no consumer of S3 event notifications exists.
  bucket = var.bucket_name

  # Tables are never destroyed with the stack: a destroy fails while the bucket holds objects.
  force_destroy = false

  lifecycle {
    precondition {
      condition     = !local.prefixes_overlap
      error_message = "landing_prefix and lakehouse_prefix must differ and neither may lie inside the other."
    }
  }
}

resource "aws_s3_bucket_ownership_controls" "lakehouse" {
  bucket = aws_s3_bucket.lakehouse.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "lakehouse" {
  bucket = aws_s3_bucket.lakehouse.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# Versioning keeps every overwritten or deleted object as a noncurrent version, so an
# accidental delete (or a faulty cleanup) can be undone for noncurrent_version_days.
resource "aws_s3_bucket_versioning" "lakehouse" {
  bucket = aws_s3_bucket.lakehouse.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lakehouse" {
  bucket = aws_s3_bucket.lakehouse.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.lakehouse.arn
    }
    # One data key per bucket rather than per object: far fewer KMS requests (and costs)
    # for tables made of many small files.
    bucket_key_enabled = true
  }
}

# Lifecycle: ONLY noncurrent versions and abandoned multipart uploads.
#
# Live objects must never expire by lifecycle. A Delta table version references its data
# files and its log entries by path; `medallion lineage trace` follows a Gold row back to
# the Bronze version and the raw landed line. Expiring a live file would silently break
# time travel, lineage and the table itself. Live data is retired only by Delta's own
# retention (log cleanup after `storage.log_retention_days`, and vacuum of files removed
# more than `storage.deleted_file_retention_days` ago); what they delete becomes a
# noncurrent version here and is expired after noncurrent_version_days.
resource "aws_s3_bucket_lifecycle_configuration" "lakehouse" {
  bucket = aws_s3_bucket.lakehouse.id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
  }

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # The rules refer to versions, so versioning must be on first.
  depends_on = [aws_s3_bucket_versioning.lakehouse]
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.lakehouse.arn, "${aws_s3_bucket.lakehouse.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "DenyTlsOlderThan12"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.lakehouse.arn, "${aws_s3_bucket.lakehouse.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }

  # Objects are encrypted with the bucket's key by default (the engine sends no encryption
  # headers). A request that asks for another encryption, or another KMS key, is refused.
  statement {
    sid       = "DenyOtherEncryption"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.lakehouse.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "StringNotEqualsIfExists"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["aws:kms"]
    }
  }

  statement {
    sid       = "DenyOtherKmsKey"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.lakehouse.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "StringNotEqualsIfExists"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = [aws_kms_key.lakehouse.arn]
    }
  }
}

resource "aws_s3_bucket_policy" "lakehouse" {
  bucket = aws_s3_bucket.lakehouse.id
  policy = data.aws_iam_policy_document.bucket.json

  # A bucket policy is refused while the public access block is being changed.
  depends_on = [aws_s3_bucket_public_access_block.lakehouse]
}

resource "aws_s3_bucket_logging" "lakehouse" {
  count = var.access_log_bucket == null ? 0 : 1

  bucket        = aws_s3_bucket.lakehouse.id
  target_bucket = var.access_log_bucket
  target_prefix = coalesce(var.access_log_prefix, "${var.bucket_name}/")
}
