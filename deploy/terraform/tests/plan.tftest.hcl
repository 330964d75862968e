# `terraform test` runs these offline: the AWS provider is mocked, so every resource is
# planned and "applied" against generated values, and the assertions check what this
# configuration decides (routes, health check, settings, secrets, failover, scaling).

mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = {
      names = ["us-east-1a", "us-east-1b", "us-east-1c"]
    }
  }

  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }

  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }

  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }

  mock_data "aws_elb_service_account" {
    defaults = {
      arn = "arn:aws:iam::127311923021:root"
    }
  }

  mock_resource "aws_ecr_repository" {
    defaults = {
      repository_url = "123456789012.dkr.ecr.us-east-1.amazonaws.com/studyhall"
    }
  }

  mock_resource "aws_kms_key" {
    defaults = {
      arn = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    }
  }

  mock_resource "aws_secretsmanager_secret" {
    defaults = {
      arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:studyhall/x-AbCdEf"
    }
  }

  mock_resource "aws_cloudwatch_log_group" {
    defaults = {
      arn = "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/studyhall"
    }
  }

  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/studyhall"
    }
  }

  mock_resource "aws_lb" {
    defaults = {
      arn        = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/studyhall/0123456789abcdef"
      arn_suffix = "app/studyhall/0123456789abcdef"
      dns_name   = "studyhall-123.us-east-1.elb.amazonaws.com"
    }
  }

  mock_resource "aws_lb_target_group" {
    defaults = {
      arn        = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/studyhall-serve/0123456789abcdef"
      arn_suffix = "targetgroup/studyhall-serve/0123456789abcdef"
    }
  }

  mock_resource "aws_ecs_cluster" {
    defaults = {
      arn = "arn:aws:ecs:us-east-1:123456789012:cluster/studyhall"
    }
  }

  mock_resource "aws_s3_bucket" {
    defaults = {
      arn    = "arn:aws:s3:::studyhall-images-0123"
      bucket = "studyhall-images-0123"
    }
  }

  mock_resource "aws_sns_topic" {
    defaults = {
      arn = "arn:aws:sns:us-east-1:123456789012:studyhall-alarms"
    }
  }

  mock_resource "aws_appautoscaling_policy" {
    defaults = {
      arn = "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:0:resource/ecs/service/studyhall/x:policyName/p"
    }
  }
}

variables {
  image_tag        = "3f2c1ab"
  redis_auth_token = "0123456789abcdef0123456789abcdef"
}

run "defaults_serve_plain_http_with_redis_and_a_separate_worker" {
  assert {
    condition     = aws_lb_target_group.serve.health_check[0].path == "/ready" && aws_lb_target_group.serve.port == 8080
    error_message = "the load balancer must check /ready on port 8080"
  }

  assert {
    condition     = length(aws_lb_listener.https) == 0 && aws_lb_listener.http.default_action[0].type == "forward"
    error_message = "without a certificate, port 80 forwards to the tasks"
  }

  assert {
    condition     = length(aws_subnet.public) == 2 && length(aws_subnet.private) == 2 && length(aws_nat_gateway.main) == 2
    error_message = "two zones, each with a public and a private subnet and its own NAT gateway"
  }

  assert {
    condition     = jsondecode(aws_ecs_task_definition.serve.container_definitions)[0].image == "123456789012.dkr.ecr.us-east-1.amazonaws.com/studyhall:3f2c1ab"
    error_message = "the API runs the tagged image from the repository"
  }

  assert {
    condition = {
      for e in jsondecode(aws_ecs_task_definition.serve.container_definitions)[0].environment : e.name => e.value
      } == {
      STUDYHALL_LOG_FORMAT               = "json"
      STUDYHALL_DATABASE_MAX_CONNECTIONS = "10"
      STUDYHALL_LISTEN                   = "0.0.0.0:8080"
      STUDYHALL_NO_WORKER                = "true"
      STUDYHALL_SHUTDOWN_DRAIN           = "30s"
      STUDYHALL_AUTH                     = "hs256"
      STUDYHALL_TRUST_IDENTITY_HEADERS   = "false"
      STUDYHALL_STREAMS_BACKEND          = "redis"
      STUDYHALL_STREAM_LIMIT             = "3"
      STUDYHALL_STREAM_POLICY            = "reject"
      STUDYHALL_STREAM_GRACE_SECS        = "0"
      STUDYHALL_JWT_USER_CLAIM           = "sub"
      STUDYHALL_EVENTS_READ              = "token"
      STUDYHALL_EVENTS_WRITE             = "token"
      STUDYHALL_S3_BUCKET                = "studyhall-images-0123"
      STUDYHALL_S3_REGION                = "us-east-1"
    }
    error_message = "the API's settings (the event log read and written with tokens only)"
  }

  assert {
    condition     = jsondecode(aws_ecs_task_definition.serve.container_definitions)[0].stopTimeout > aws_lb_target_group.serve.deregistration_delay
    error_message = "the API drains for the deregistration delay after SIGTERM and needs time after that to finish"
  }

  assert {
    condition = toset([
      for s in jsondecode(aws_ecs_task_definition.serve.container_definitions)[0].secrets : s.name
    ]) == toset(["STUDYHALL_ADMIN_TOKEN", "STUDYHALL_AUDIT_SIGNING_KEY", "STUDYHALL_DATABASE_URL", "STUDYHALL_JWT_SECRET", "STUDYHALL_REDIS_URL"])
    error_message = "the API's secrets come from Secrets Manager"
  }

  assert {
    condition = (
      aws_secretsmanager_secret.task["database_url"].name == "studyhall/database-url" &&
      toset(keys(aws_secretsmanager_secret_version.generated)) == toset(["database_url", "admin_token", "jwt_secret", "audit_key"]) &&
      length(aws_secretsmanager_secret_version.redis_url) == 1
    )
    error_message = "each task secret has its name; the generated ones are written write-only, the Redis URL from the token"
  }

  assert {
    condition     = jsondecode(aws_ecs_task_definition.worker.container_definitions)[0].command == ["worker"]
    error_message = "the worker service runs `studyhall worker`"
  }

  assert {
    condition = toset([
      for s in jsondecode(aws_ecs_task_definition.worker.container_definitions)[0].secrets : s.name
    ]) == toset(["STUDYHALL_DATABASE_URL"])
    error_message = "the worker gets the database and nothing else"
  }

  assert {
    condition     = aws_elasticache_replication_group.main[0].transit_encryption_enabled && aws_elasticache_replication_group.main[0].num_cache_clusters == 2
    error_message = "Redis: TLS, a primary and a replica"
  }

  assert {
    condition     = aws_db_instance.main.multi_az && aws_db_instance.main.storage_encrypted && !aws_db_instance.main.publicly_accessible
    error_message = "PostgreSQL: Multi-AZ, encrypted, private"
  }

  assert {
    condition     = aws_db_instance.main.performance_insights_enabled
    error_message = "Performance Insights on the default class"
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.cpu_high["serve"].threshold == 85 && aws_cloudwatch_metric_alarm.cpu_low["serve"].threshold == 10
    error_message = "the step alarms act at 85 % and 10 % CPU"
  }

  assert {
    condition     = one(aws_appautoscaling_policy.step_out["serve"].step_scaling_policy_configuration[0].step_adjustment).scaling_adjustment == 1
    error_message = "a high-CPU alarm adds one task"
  }

  assert {
    condition     = aws_appautoscaling_policy.requests.target_tracking_scaling_policy_configuration[0].predefined_metric_specification[0].resource_label == "app/studyhall/0123456789abcdef/targetgroup/studyhall-serve/0123456789abcdef"
    error_message = "request-count tracking names the load balancer and target group"
  }

  assert {
    condition     = length(aws_iam_role.deploy) == 0
    error_message = "no deploy role without a GitHub repository"
  }
}

run "a_certificate_turns_on_https_and_redirects_http" {
  variables {
    certificate_arn    = "arn:aws:acm:us-east-1:123456789012:certificate/abc"
    single_nat_gateway = true
    github_repository  = "example/studyhall"
  }

  assert {
    condition     = length(aws_lb_listener.https) == 1 && aws_lb_listener.https[0].port == 443
    error_message = "an HTTPS listener on 443"
  }

  assert {
    condition     = aws_lb_listener.http.default_action[0].type == "redirect" && aws_lb_listener.http.default_action[0].redirect[0].protocol == "HTTPS"
    error_message = "port 80 redirects to HTTPS"
  }

  assert {
    condition     = length(aws_nat_gateway.main) == 1
    error_message = "single_nat_gateway makes one NAT gateway"
  }

  assert {
    condition     = output.alb_url == "https://studyhall-123.us-east-1.elb.amazonaws.com"
    error_message = "the URL is https"
  }

  assert {
    condition     = length(aws_iam_role.deploy) == 1
    error_message = "a deploy role for the named repository"
  }
}

run "without_redis_stream_leases_stay_in_postgresql" {
  variables {
    db_instance_class    = "db.t4g.micro"
    db_multi_az          = false
    enable_redis         = false
    redis_auth_token     = ""
    auth_mode            = "jwks"
    cognito_user_pool_id = "eu-west-1_AbC123"
  }

  assert {
    condition     = length(aws_elasticache_replication_group.main) == 0 && !contains(keys(aws_secretsmanager_secret.task), "redis_url")
    error_message = "no Redis"
  }

  assert {
    condition     = !aws_db_instance.main.performance_insights_enabled && !aws_db_instance.main.multi_az
    error_message = "a micro database in one zone, without Performance Insights (it has none)"
  }

  assert {
    condition = {
      for e in jsondecode(aws_ecs_task_definition.serve.container_definitions)[0].environment : e.name => e.value
    }["STUDYHALL_STREAMS_BACKEND"] == "sql"
    error_message = "stream leases in PostgreSQL"
  }

  assert {
    condition = {
      for e in jsondecode(aws_ecs_task_definition.serve.container_definitions)[0].environment : e.name => e.value
    }["STUDYHALL_COGNITO_REGION"] == "eu-west-1"
    error_message = "the Cognito region comes from the pool id"
  }

  assert {
    condition = toset([
      for s in jsondecode(aws_ecs_task_definition.serve.container_definitions)[0].secrets : s.name
    ]) == toset(["STUDYHALL_ADMIN_TOKEN", "STUDYHALL_AUDIT_SIGNING_KEY", "STUDYHALL_DATABASE_URL"])
    error_message = "no JWT secret with jwks, no Redis URL without Redis"
  }
}

run "redis_without_a_token_is_refused" {
  command = plan

  variables {
    redis_auth_token = ""
  }

  expect_failures = [aws_elasticache_replication_group.main]
}

run "invalid_values_are_refused" {
  command = plan

  variables {
    redis_replicas    = 0
    az_count          = 1
    image_tag         = "has space"
    stream_policy     = "kick-newest"
    stream_grace_secs = 3601
  }

  expect_failures = [var.redis_replicas, var.az_count, var.image_tag, var.stream_policy, var.stream_grace_secs]
}
