output "bucket_name" {
  description = "Name of the lakehouse bucket."
  value       = aws_s3_bucket.lakehouse.id
}

output "bucket_arn" {
  description = "ARN of the lakehouse bucket."
  value       = aws_s3_bucket.lakehouse.arn
}

output "kms_key_arn" {
  description = "ARN of the customer-managed KMS key that encrypts the bucket."
  value       = aws_kms_key.lakehouse.arn
}

output "kms_key_alias" {
  description = "Alias of the KMS key."
  value       = aws_kms_alias.lakehouse.name
}

output "layer_role_arns" {
  description = "IAM role ARN of each layer (bronze, silver, gold), for the eks.amazonaws.com/role-arn annotation of its service account."
  value       = { for layer, role in aws_iam_role.layer : layer => role.arn }
}

output "auditor_role_arn" {
  description = "ARN of the read-only auditor role, or null when auditor_principal_arns is empty."
  value       = one(aws_iam_role.auditor[*].arn)
}

output "medallion_root" {
  description = "Lakehouse root URL (MEDALLION_ROOT / --root)."
  value       = local.medallion_root
}

output "medallion_landing" {
  description = "Landing prefix URL (MEDALLION_LANDING / --landing)."
  value       = local.medallion_landing
}

output "namespace" {
  description = "Kubernetes namespace of the jobs."
  value       = local.namespace
}

output "service_account_names" {
  description = "Kubernetes service account of each layer (the subject its IAM role trusts)."
  value       = local.service_account_names
}
