# Copy to production.tfvars (ignored by git) and adjust. Secrets are not kept here:
#   export TF_VAR_redis_auth_token=$(openssl rand -hex 32)   # once; keep it in your vault
region    = "us-east-1"
name      = "studyhall"
image_tag = "REPLACE-with-the-pushed-tag"

# HTTPS: an ACM certificate for your domain (then point a CNAME at alb_dns_name).
# certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/…"

# Identity: hs256 with a generated secret (default), or Cognito:
# auth_mode            = "jwks"
# cognito_user_pool_id = "us-east-1_AbCdEf123"
# jwt_audience         = "<app client id>"

# Capacity (defaults shown).
serve_min_count  = 2
serve_max_count  = 10
worker_min_count = 1
worker_max_count = 4

# A cheaper trial: one NAT gateway, a single-zone micro database, no deletion protection.
# single_nat_gateway  = true
# db_multi_az         = false
# db_instance_class   = "db.t4g.micro"
# serve_min_count     = 1
# deletion_protection = false

# The deploy workflow's role (GitHub OIDC):
# github_repository = "your-org/studyhall"

# alarm_email = "oncall@example.com"
