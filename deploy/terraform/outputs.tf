output "alb_url" {
  description = "Where the API answers."
  value       = "${local.https ? "https" : "http"}://${aws_lb.main.dns_name}"
}

output "alb_dns_name" {
  description = "Load balancer DNS name, for a CNAME or alias record of your domain."
  value       = aws_lb.main.dns_name
}

output "ecr_repository_url" {
  description = "Push images here: docker push <url>:<tag>."
  value       = aws_ecr_repository.studyhall.repository_url
}

output "cluster_name" {
  description = "ECS cluster; its name is the Terraform name, which deploy/rollout takes as --name."
  value       = aws_ecs_cluster.main.name
}

output "serve_service_name" {
  description = "ECS service of the API tasks."
  value       = aws_ecs_service.serve.name
}

output "worker_service_name" {
  description = "ECS service of the job workers."
  value       = aws_ecs_service.worker.name
}

output "admin_token_secret_arn" {
  description = "Secret holding STUDYHALL_ADMIN_TOKEN: aws secretsmanager get-secret-value --secret-id <arn>."
  value       = aws_secretsmanager_secret.task["admin_token"].arn
}

output "audit_key_secret_arn" {
  description = "Secret holding STUDYHALL_AUDIT_SIGNING_KEY; with it, `studyhall audit public-key` prints the key auditors verify with."
  value       = aws_secretsmanager_secret.task["audit_key"].arn
}

output "jwt_secret_arn" {
  description = "Secret holding the HS256 key (auth_mode = hs256), for whoever issues tokens."
  value       = try(aws_secretsmanager_secret.task["jwt_secret"].arn, null)
}

output "database_endpoint" {
  description = "PostgreSQL endpoint (private; reachable from the tasks only)."
  value       = aws_db_instance.main.endpoint
}

output "log_groups" {
  description = "CloudWatch log groups of the API tasks and the workers."
  value       = { serve = aws_cloudwatch_log_group.serve.name, worker = aws_cloudwatch_log_group.worker.name }
}

output "alarm_topic_arn" {
  description = "SNS topic of the alarms; subscribe a pager or chat integration."
  value       = aws_sns_topic.alarms.arn
}

output "github_deploy_role_arn" {
  description = "Role for the deploy workflow (repository variable AWS_DEPLOY_ROLE_ARN)."
  value       = one(aws_iam_role.deploy[*].arn)
}
