terraform {
  # Write-only attributes (passwords that never enter the state) need Terraform 1.11.
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # State in S3 (encrypted, versioned, locked): `terraform init -backend-config=backend.hcl`.
  # The README shows the file. The state holds the Redis auth token, nothing else secret.
  backend "s3" {}
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ Application = var.name, ManagedBy = "terraform" }, var.tags)
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_availability_zones" "available" {
  # checkov:skip=CKV_AWS_394: only the first az_count zones by name are used; zones AWS adds later sort after them
  state = "available"
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  azs        = slice(data.aws_availability_zones.available.names, 0, var.az_count)
  https      = var.certificate_arn != ""
  image      = "${aws_ecr_repository.studyhall.repository_url}:${var.image_tag}"
}
