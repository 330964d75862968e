variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as us-east-1."
  }
}

variable "name" {
  description = "Prefix for every resource name (lowercase letters, digits and dashes)."
  type        = string
  default     = "studyhall"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name must be 2-21 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

variable "image_tag" {
  description = "Tag of the studyhall image in the ECR repository for the first rollout; later rollouts are made by deploy/rollout (the deploy workflow)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a Docker tag: letters, digits, '_', '.', '-', at most 128 characters."
  }
}

# --- Network ---------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "CIDR block of the VPC; a /16 to /20 leaves room for the subnets."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be an IPv4 CIDR block of /20 or larger."
  }
}

variable "az_count" {
  description = "Availability zones to spread subnets, tasks, the database and Redis over."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 3
    error_message = "az_count must be 2 or 3."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all zones (cheaper) instead of one per zone (survives a zone outage)."
  type        = bool
  default     = false
}

variable "allowed_cidrs" {
  description = "Client address ranges admitted to the load balancer."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.allowed_cidrs) > 0 && alltrue([for cidr in var.allowed_cidrs : can(cidrnetmask(cidr))])
    error_message = "allowed_cidrs must be a non-empty list of IPv4 CIDR blocks."
  }
}

# --- Load balancer ---------------------------------------------------------------------

variable "certificate_arn" {
  description = "ACM certificate for the HTTPS listener; when set, HTTP redirects to HTTPS. Empty serves plain HTTP (trials only)."
  type        = string
  default     = ""

  validation {
    condition     = var.certificate_arn == "" || can(regex("^arn:aws[a-z-]*:acm:", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN or empty."
  }
}

variable "waf_web_acl_arn" {
  description = "Regional WAFv2 web ACL to attach to the load balancer; empty attaches none."
  type        = string
  default     = ""

  validation {
    condition     = var.waf_web_acl_arn == "" || can(regex("^arn:aws[a-z-]*:wafv2:", var.waf_web_acl_arn))
    error_message = "waf_web_acl_arn must be a WAFv2 web ACL ARN or empty."
  }
}

variable "deletion_protection" {
  description = "Protect the load balancer and the database from deletion (turn off before `terraform destroy`)."
  type        = bool
  default     = true
}

# --- Service ---------------------------------------------------------------------------

variable "serve_cpu" {
  description = "CPU units of one API task (1024 = 1 vCPU)."
  type        = number
  default     = 512

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.serve_cpu)
    error_message = "serve_cpu must be a Fargate CPU size: 256, 512, 1024, 2048 or 4096."
  }
}

variable "serve_memory" {
  description = "Memory (MiB) of one API task; must suit serve_cpu on Fargate."
  type        = number
  default     = 1024

  validation {
    condition     = var.serve_memory >= 512 && var.serve_memory <= 30720
    error_message = "serve_memory must be between 512 and 30720 MiB."
  }
}

variable "worker_cpu" {
  description = "CPU units of one worker task (1024 = 1 vCPU)."
  type        = number
  default     = 256

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.worker_cpu)
    error_message = "worker_cpu must be a Fargate CPU size: 256, 512, 1024, 2048 or 4096."
  }
}

variable "worker_memory" {
  description = "Memory (MiB) of one worker task; must suit worker_cpu on Fargate."
  type        = number
  default     = 512

  validation {
    condition     = var.worker_memory >= 512 && var.worker_memory <= 30720
    error_message = "worker_memory must be between 512 and 30720 MiB."
  }
}

variable "serve_min_count" {
  description = "Fewest API tasks; 2 or more keeps one per zone."
  type        = number
  default     = 2

  validation {
    condition     = var.serve_min_count >= 1
    error_message = "serve_min_count must be at least 1."
  }
}

variable "serve_max_count" {
  description = "Most API tasks autoscaling may run."
  type        = number
  default     = 10

  validation {
    condition     = var.serve_max_count >= 1 && var.serve_max_count <= 100
    error_message = "serve_max_count must be between 1 and 100."
  }
}

variable "worker_min_count" {
  description = "Fewest job worker tasks."
  type        = number
  default     = 1

  validation {
    condition     = var.worker_min_count >= 1
    error_message = "worker_min_count must be at least 1: queued grades wait for a worker."
  }
}

variable "worker_max_count" {
  description = "Most job worker tasks autoscaling may run."
  type        = number
  default     = 4

  validation {
    condition     = var.worker_max_count >= 1 && var.worker_max_count <= 50
    error_message = "worker_max_count must be between 1 and 50."
  }
}

variable "worker_concurrency" {
  description = "Jobs one worker task runs at a time (STUDYHALL_WORKER_CONCURRENCY)."
  type        = number
  default     = 4

  validation {
    condition     = var.worker_concurrency >= 1 && var.worker_concurrency <= 64
    error_message = "worker_concurrency must be between 1 and 64."
  }
}

variable "spot_weight" {
  description = "Fargate Spot tasks per on-demand task above the minimum (0 runs everything on demand). The minimum always runs on demand."
  type        = number
  default     = 0

  validation {
    condition     = var.spot_weight >= 0 && var.spot_weight <= 10
    error_message = "spot_weight must be between 0 and 10."
  }
}

variable "cpu_target_percent" {
  description = "Average CPU the target-tracking policies keep the API and worker services at."
  type        = number
  default     = 60

  validation {
    condition     = var.cpu_target_percent >= 20 && var.cpu_target_percent <= 80
    error_message = "cpu_target_percent must be between 20 and 80 (the step alarms act at 85 and 10)."
  }
}

variable "requests_per_task_per_minute" {
  description = "Load balancer requests per API task per minute that target tracking aims at."
  type        = number
  default     = 30000

  validation {
    condition     = var.requests_per_task_per_minute >= 100
    error_message = "requests_per_task_per_minute must be at least 100."
  }
}

variable "database_max_connections" {
  description = "Database connections per task (STUDYHALL_DATABASE_MAX_CONNECTIONS); tasks x this must stay under the instance's max_connections."
  type        = number
  default     = 10

  validation {
    condition     = var.database_max_connections >= 2 && var.database_max_connections <= 100
    error_message = "database_max_connections must be between 2 and 100."
  }
}

# --- Identity --------------------------------------------------------------------------

variable "auth_mode" {
  description = "Token verification (STUDYHALL_AUTH): hs256 with a generated secret in Secrets Manager, jwks (Cognito or another issuer), or off."
  type        = string
  default     = "hs256"

  validation {
    condition     = contains(["hs256", "jwks", "off"], var.auth_mode)
    error_message = "auth_mode must be hs256, jwks or off."
  }
}

variable "cognito_user_pool_id" {
  description = "Cognito user pool whose tokens are accepted (auth_mode = jwks), e.g. us-east-1_AbCdEf123."
  type        = string
  default     = ""

  validation {
    condition     = var.cognito_user_pool_id == "" || can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]_[A-Za-z0-9]+$", var.cognito_user_pool_id))
    error_message = "cognito_user_pool_id must look like us-east-1_AbCdEf123, or be empty."
  }
}

variable "jwks_url" {
  description = "JWKS URL of another issuer (auth_mode = jwks, when cognito_user_pool_id is empty)."
  type        = string
  default     = ""

  validation {
    condition     = var.jwks_url == "" || startswith(var.jwks_url, "https://")
    error_message = "jwks_url must be an https:// URL or empty."
  }
}

variable "jwt_audience" {
  description = "Accepted token audience (aud, or Cognito's client_id); empty accepts any."
  type        = string
  default     = ""
}

variable "jwt_user_claim" {
  description = "Claim that holds the user id (the original Cognito setup used cognito:username)."
  type        = string
  default     = "sub"
}

variable "trust_identity_headers" {
  description = "Accept X-User-Id from clients (STUDYHALL_TRUST_IDENTITY_HEADERS). Only safe when a gateway in front sets it; the public load balancer does not."
  type        = bool
  default     = false
}

variable "stream_limit" {
  description = "Concurrent video streams per viewer (STUDYHALL_STREAM_LIMIT)."
  type        = number
  default     = 3

  validation {
    condition     = var.stream_limit >= 1 && var.stream_limit <= 1000
    error_message = "stream_limit must be between 1 and 1000."
  }
}

variable "stream_policy" {
  description = "What a start at a viewer's limit does (STUDYHALL_STREAM_POLICY): reject (429), ask (409 listing the active streams) or kick_oldest (end the viewer's oldest stream)."
  type        = string
  default     = "reject"

  validation {
    condition     = contains(["reject", "ask", "kick_oldest"], var.stream_policy)
    error_message = "stream_policy must be reject, ask or kick_oldest."
  }
}

variable "stream_grace_secs" {
  description = "Seconds after a stream lease expires during which it still counts and a heartbeat renews it (STUDYHALL_STREAM_GRACE_SECS)."
  type        = number
  default     = 0

  validation {
    condition     = var.stream_grace_secs >= 0 && var.stream_grace_secs <= 3600
    error_message = "stream_grace_secs must be between 0 and 3600."
  }
}

variable "secrets_version" {
  description = "Generation of the generated secrets (database password, admin token, JWT secret). Raise it by one to rotate them, then roll out."
  type        = number
  default     = 1

  validation {
    condition     = var.secrets_version >= 1 && floor(var.secrets_version) == var.secrets_version
    error_message = "secrets_version must be a positive whole number."
  }
}

# --- Data ------------------------------------------------------------------------------

variable "db_instance_class" {
  description = "RDS instance class; micro and small classes run without Performance Insights."
  type        = string
  default     = "db.t4g.medium"

  validation {
    condition     = startswith(var.db_instance_class, "db.")
    error_message = "db_instance_class must be an RDS instance class such as db.t4g.medium."
  }
}

variable "db_engine_version" {
  description = "PostgreSQL major version (14 or later)."
  type        = string
  default     = "16"

  validation {
    condition     = contains(["14", "15", "16", "17"], var.db_engine_version)
    error_message = "db_engine_version must be 14, 15, 16 or 17."
  }
}

variable "db_allocated_storage" {
  description = "Initial database storage in GiB; it grows by itself up to db_max_allocated_storage."
  type        = number
  default     = 20

  validation {
    condition     = var.db_allocated_storage >= 20 && var.db_allocated_storage <= 65536
    error_message = "db_allocated_storage must be between 20 and 65536 GiB."
  }
}

variable "db_max_allocated_storage" {
  description = "Ceiling for storage autoscaling in GiB."
  type        = number
  default     = 200

  validation {
    condition     = var.db_max_allocated_storage >= 20 && var.db_max_allocated_storage <= 65536
    error_message = "db_max_allocated_storage must be between 20 and 65536 GiB."
  }
}

variable "db_multi_az" {
  description = "A standby database in a second zone with automatic failover (about twice the instance cost)."
  type        = bool
  default     = true
}

variable "db_backup_retention_days" {
  description = "Days of automated database backups (point-in-time recovery window)."
  type        = number
  default     = 7

  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 1 and 35."
  }
}

variable "enable_redis" {
  description = "Keep stream leases in ElastiCache Redis (STUDYHALL_STREAMS_BACKEND=redis); false keeps them in PostgreSQL."
  type        = bool
  default     = true
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.micro"

  validation {
    condition     = startswith(var.redis_node_type, "cache.")
    error_message = "redis_node_type must be an ElastiCache node type such as cache.t4g.micro."
  }
}

variable "redis_replicas" {
  description = "Redis replicas beside the primary, in other zones; a failed primary is replaced by one automatically."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_replicas >= 1 && var.redis_replicas <= 5
    error_message = "redis_replicas must be between 1 and 5 (automatic failover needs a replica)."
  }
}

variable "redis_auth_token" {
  description = "Redis AUTH token, 32-128 letters and digits (e.g. `openssl rand -hex 32`). Required when enable_redis is true."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.redis_auth_token == "" || can(regex("^[A-Za-z0-9]{32,128}$", var.redis_auth_token))
    error_message = "redis_auth_token must be 32-128 letters and digits."
  }
}

# --- Operations ------------------------------------------------------------------------

variable "log_retention_days" {
  description = "Days CloudWatch keeps the service, database, Redis and VPC flow logs."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs supports (1, 3, 5, 7, 14, 30, 60, 90, ... 365, ... 3653)."
  }
}

variable "alarm_email" {
  description = "Address that receives alarm notifications (confirm the subscription mail); empty sends none."
  type        = string
  default     = ""

  validation {
    condition     = var.alarm_email == "" || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be an email address or empty."
  }
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose deploy workflow may push images and roll out (OIDC); empty creates no deploy role."
  type        = string
  default     = ""

  validation {
    condition     = var.github_repository == "" || can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be owner/name or empty."
  }
}

variable "github_branch" {
  description = "Branch whose workflow runs may assume the deploy role."
  type        = string
  default     = "main"
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub OIDC provider; false when the account already has one."
  type        = bool
  default     = true
}
