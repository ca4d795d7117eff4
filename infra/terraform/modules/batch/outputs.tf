output "cluster_arn" {
  description = "ECS cluster the tasks run in."
  value       = local.cluster_arn
}

output "task_definition_arns" {
  description = "Task definition ARN (with revision) of each layer."
  value       = { for layer, td in aws_ecs_task_definition.layer : layer => td.arn }
}

output "task_role_arns" {
  description = "Task role ARN of each layer."
  value       = { for layer, r in aws_iam_role.task : layer => r.arn }
}

output "schedule_names" {
  description = "EventBridge Scheduler schedules: bronze-<shard>, silver and gold."
  value       = { for k, s in aws_scheduler_schedule.run : k => s.name }
}

output "log_group_name" {
  description = "CloudWatch log group of the tasks (one stream prefix per layer)."
  value       = aws_cloudwatch_log_group.jobs.name
}

output "security_group_id" {
  description = "Security group of the tasks."
  value       = aws_security_group.tasks.id
}
