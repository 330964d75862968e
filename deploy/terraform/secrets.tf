# One customer-managed key encrypts the secrets, logs, database, Redis, the image
# repository and the alarm topic. IAM policies grant its use (the account statement);
# CloudWatch Logs and CloudWatch alarms, which act as services, are named here.

data "aws_iam_policy_document" "key" {
  # checkov:skip=CKV_AWS_109: a key policy's "*" resource is this key itself
  # checkov:skip=CKV_AWS_111: a key policy's "*" resource is this key itself
  # checkov:skip=CKV_AWS_356: a key policy's "*" resource is this key itself
  statement {
    sid       = "AccountAdministersAndDelegatesToIam"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncryptsThisDeploymentsLogGroups"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:*"]
    }
  }

  statement {
    sid       = "CloudWatchAlarmsPublishToTheEncryptedTopic"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_kms_key" "main" {
  description             = "${var.name}: secrets, logs, database, Redis, images"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "main" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.main.key_id
}

# --- The tasks' secrets, one per setting the tasks receive. -----------------------------
#
# The database password, admin token, hs256 key and audit signing key are two version-4
# UUIDs each, 244
# random bits from Terraform's cryptographic random source, written only to their
# destinations through write-only arguments, so they are never in the plan or the state.
# Raise var.secrets_version to generate new ones. The Redis URL holds the AUTH token
# given in var.redis_auth_token.

locals {
  task_secrets = merge(
    {
      database_url = { variable = "STUDYHALL_DATABASE_URL", about = "PostgreSQL URL with the generated password" }
      admin_token  = { variable = "STUDYHALL_ADMIN_TOKEN", about = "bearer token of the admin routes" }
      audit_key    = { variable = "STUDYHALL_AUDIT_SIGNING_KEY", about = "Ed25519 seed that signs audit checkpoints" }
    },
    var.auth_mode != "hs256" ? {} : {
      jwt_secret = { variable = "STUDYHALL_JWT_SECRET", about = "HS256 key shared by every task" }
    },
    !var.enable_redis ? {} : {
      redis_url = { variable = "STUDYHALL_REDIS_URL", about = "rediss:// URL with the AUTH token" }
    },
  )

  generated = {
    for name in ["database_password", "admin_token", "jwt_secret", "audit_key"] :
    name => join("", [for _ in range(2) : replace(uuid(), "-", "")])
  }

  generated_secrets = {
    database_url = "postgres://${aws_db_instance.main.username}:${local.generated.database_password}@${aws_db_instance.main.address}:${aws_db_instance.main.port}/${aws_db_instance.main.db_name}?sslmode=require"
    admin_token  = local.generated.admin_token
    jwt_secret   = local.generated.jwt_secret
    # 64 hex digits: an Ed25519 seed, as STUDYHALL_AUDIT_SIGNING_KEY accepts it.
    audit_key = local.generated.audit_key
  }
}

resource "aws_secretsmanager_secret" "task" {
  # checkov:skip=CKV2_AWS_57: rotation is an explicit rollout (var.secrets_version, var.redis_auth_token), since the running tasks hold the value
  for_each = local.task_secrets

  name                    = "${var.name}/${replace(each.key, "_", "-")}"
  description             = "${each.value.variable}: ${each.value.about}"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "generated" {
  for_each = setintersection(keys(local.task_secrets), keys(local.generated_secrets))

  secret_id                = aws_secretsmanager_secret.task[each.key].id
  secret_string_wo         = local.generated_secrets[each.key]
  secret_string_wo_version = var.secrets_version
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  count = var.enable_redis ? 1 : 0

  secret_id     = aws_secretsmanager_secret.task["redis_url"].id
  secret_string = "rediss://:${var.redis_auth_token}@${aws_elasticache_replication_group.main[0].primary_endpoint_address}:${aws_elasticache_replication_group.main[0].port}"
}

# --- Log groups, created here so that each has its retention and the key. -------------

resource "aws_cloudwatch_log_group" "serve" {
  name              = "/ecs/${var.name}/serve"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_cloudwatch_log_group" "worker" {
  name              = "/ecs/${var.name}/worker"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_cloudwatch_log_group" "database" {
  for_each = toset(["postgresql", "upgrade"])

  name              = "/aws/rds/instance/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_cloudwatch_log_group" "redis" {
  count = var.enable_redis ? 1 : 0

  name              = "/aws/elasticache/${var.name}/slow-log"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_cloudwatch_log_group" "flow" {
  name              = "/aws/vpc/${var.name}/flow-logs"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}
