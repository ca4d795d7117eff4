output "layers" {
  description = "Per layer (bronze, silver, gold): read_prefixes (Get + List) and write_prefixes (Get, Put, Delete + List)."
  value       = local.layers
}

output "policy_json" {
  description = "Per layer: the JSON IAM policy of its jobs' role on the bucket and the key."
  value       = { for layer, doc in data.aws_iam_policy_document.layer : layer => doc.json }
}

output "kms_via_service" {
  description = "The kms:ViaService value under which the layers use the key (S3 in the bucket's region)."
  value       = local.kms_via_service
}
