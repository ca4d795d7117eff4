variable "bucket_arn" {
  description = "ARN of the lakehouse bucket."
  type        = string
}

variable "kms_key_arn" {
  description = "ARN of the bucket's KMS key (SSE-KMS)."
  type        = string
}

variable "region" {
  description = "Region of the bucket: the layers may use the key only through S3 in this region (kms:ViaService = s3.<region>.amazonaws.com)."
  type        = string
}

variable "landing_prefix" {
  description = "Key prefix (no leading or trailing slash) of the landed raw files, read by Bronze."
  type        = string
}

variable "lakehouse_prefix" {
  description = "Key prefix (no leading or trailing slash) of the lakehouse root: the layers' tables and <prefix>/_system."
  type        = string
}
