resource "aws_ecs_cluster" "main" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "main" {
  cluster_name       = aws_ecs_cluster.main.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]
}

locals {
  # Settings shared by the API and the worker (names are studyhall's STUDYHALL_* list).
  common_environment = {
    STUDYHALL_LOG_FORMAT               = "json"
    STUDYHALL_DATABASE_MAX_CONNECTIONS = tostring(var.database_max_connections)
  }

  serve_environment = merge(local.common_environment, {
    STUDYHALL_LISTEN    = "0.0.0.0:8080"
    STUDYHALL_NO_WORKER = "true"
    # On SIGTERM, keep answering (with /ready failing) for as long as the load balancer
    # takes to deregister the task.
    STUDYHALL_SHUTDOWN_DRAIN         = "${aws_lb_target_group.serve.deregistration_delay}s"
    STUDYHALL_AUTH                   = var.auth_mode
    STUDYHALL_TRUST_IDENTITY_HEADERS = tostring(var.trust_identity_headers)
    STUDYHALL_STREAMS_BACKEND        = var.enable_redis ? "redis" : "sql"
    STUDYHALL_STREAM_LIMIT           = tostring(var.stream_limit)
    STUDYHALL_STREAM_POLICY          = var.stream_policy
    STUDYHALL_STREAM_GRACE_SECS      = tostring(var.stream_grace_secs)
    STUDYHALL_JWT_USER_CLAIM         = var.jwt_user_claim
    # The event log holds e-mail addresses: only tokens granting events:read and
    # events:write (or the admin token) read and post it.
    STUDYHALL_EVENTS_READ  = "token"
    STUDYHALL_EVENTS_WRITE = "token"
    # Profile images in a bucket every task shares.
    STUDYHALL_S3_BUCKET = aws_s3_bucket.images.bucket
    STUDYHALL_S3_REGION = var.region
    }, var.cognito_user_pool_id == "" ? {} : {
    STUDYHALL_COGNITO_REGION  = split("_", var.cognito_user_pool_id)[0]
    STUDYHALL_COGNITO_POOL_ID = var.cognito_user_pool_id
    }, var.jwks_url == "" ? {} : {
    STUDYHALL_JWKS_URL = var.jwks_url
    }, var.jwt_audience == "" ? {} : {
    STUDYHALL_JWT_AUDIENCE = var.jwt_audience
  })

  worker_environment = merge(local.common_environment, {
    STUDYHALL_WORKER_CONCURRENCY = tostring(var.worker_concurrency)
  })

  serve_secrets = {
    for key, secret in local.task_secrets : secret.variable => aws_secretsmanager_secret.task[key].arn
  }

  worker_secrets = {
    STUDYHALL_DATABASE_URL = aws_secretsmanager_secret.task["database_url"].arn
  }

  container_base = {
    name                   = "studyhall"
    image                  = local.image
    essential              = true
    user                   = "10001"
    readonlyRootFilesystem = true
    # SIGTERM first: the server drains for the deregistration delay (30 s) and then
    # finishes its in-flight requests, the worker finishes its batch.
    stopTimeout = 60
  }
}

resource "aws_ecs_task_definition" "serve" {
  family                   = "${var.name}-serve"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.serve_cpu
  memory                   = var.serve_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.serve.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([merge(local.container_base, {
    command      = ["serve"]
    portMappings = [{ containerPort = 8080, protocol = "tcp" }]
    environment  = [for name, value in local.serve_environment : { name = name, value = value }]
    secrets      = [for name, arn in local.serve_secrets : { name = name, valueFrom = arn }]
    healthCheck = {
      command     = ["CMD-SHELL", "curl -fsS http://127.0.0.1:8080/health || exit 1"]
      interval    = 10
      timeout     = 3
      retries     = 3
      startPeriod = 10
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.serve.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "serve"
      }
    }
  })])
}

resource "aws_ecs_task_definition" "worker" {
  family                   = "${var.name}-worker"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.worker_cpu
  memory                   = var.worker_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.worker.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([merge(local.container_base, {
    command     = ["worker"]
    environment = [for name, value in local.worker_environment : { name = name, value = value }]
    secrets     = [for name, arn in local.worker_secrets : { name = name, valueFrom = arn }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.worker.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "worker"
      }
    }
  })])
}

# Rollouts after the first are made by deploy/rollout, which registers a revision of
# the latest task definition with the new image; Terraform leaves the running revision
# and the autoscaled task count alone.

resource "aws_ecs_service" "serve" {
  name                              = "${var.name}-serve"
  cluster                           = aws_ecs_cluster.main.id
  task_definition                   = aws_ecs_task_definition.serve.arn
  desired_count                     = var.serve_min_count
  platform_version                  = "LATEST"
  health_check_grace_period_seconds = 30
  propagate_tags                    = "SERVICE"

  capacity_provider_strategy {
    capacity_provider = "FARGATE"
    base              = var.serve_min_count
    weight            = 1
  }

  dynamic "capacity_provider_strategy" {
    for_each = var.spot_weight > 0 ? [1] : []

    content {
      capacity_provider = "FARGATE_SPOT"
      weight            = var.spot_weight
    }
  }

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.serve.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.serve.arn
    container_name   = "studyhall"
    container_port   = 8080
  }

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  lifecycle {
    ignore_changes = [task_definition, desired_count]
  }

  depends_on = [aws_lb_listener.http, aws_lb_listener.https, aws_ecs_cluster_capacity_providers.main]
}

resource "aws_ecs_service" "worker" {
  name             = "${var.name}-worker"
  cluster          = aws_ecs_cluster.main.id
  task_definition  = aws_ecs_task_definition.worker.arn
  desired_count    = var.worker_min_count
  platform_version = "LATEST"
  propagate_tags   = "SERVICE"

  capacity_provider_strategy {
    capacity_provider = "FARGATE"
    base              = var.worker_min_count
    weight            = 1
  }

  dynamic "capacity_provider_strategy" {
    for_each = var.spot_weight > 0 ? [1] : []

    content {
      capacity_provider = "FARGATE_SPOT"
      weight            = var.spot_weight
    }
  }

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.worker.id]
    assign_public_ip = false
  }

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  lifecycle {
    ignore_changes = [task_definition, desired_count]
  }

  depends_on = [aws_ecs_cluster_capacity_providers.main]
}
