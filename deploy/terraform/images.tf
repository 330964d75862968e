# --- Profile images ----------------------------------------------------------------------
# Clients upload profile images straight to this bucket, and show them from it, through
# presigned URLs the API hands out (STUDYHALL_S3_BUCKET), so every task sees the same
# images. Nothing in it is public.

resource "aws_s3_bucket" "images" {
  # checkov:skip=CKV_AWS_18: objects are written and read only through URLs the API signs, each request in the API's own log; CloudTrail data events are the account's choice
  # checkov:skip=CKV_AWS_144: images are kept in-region; replication is the account's choice
  # checkov:skip=CKV2_AWS_62: nothing consumes notifications of new images
  bucket_prefix = "${var.name}-images-"
  force_destroy = false
}

resource "aws_s3_bucket_public_access_block" "images" {
  bucket                  = aws_s3_bucket.images.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "images" {
  # checkov:skip=CKV2_AWS_65: the PageNow client sends x-amz-acl: private with each upload, which a bucket with ACLs disabled refuses; public access stays blocked
  bucket = aws_s3_bucket.images.id

  rule {
    # Accepts the client's `private` ACL; the bucket still owns every object.
    object_ownership = "BucketOwnerPreferred"
  }
}

resource "aws_s3_bucket_versioning" "images" {
  bucket = aws_s3_bucket.images.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "images" {
  bucket = aws_s3_bucket.images.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "images" {
  bucket = aws_s3_bucket.images.id

  rule {
    id     = "forget-replaced-images"
    status = "Enabled"

    filter {}

    # A replaced or deleted image is deleted by the API; its old version goes after a month.
    noncurrent_version_expiration {
      noncurrent_days = 30
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

# The API signs the URLs with its task role: it may put, get and delete profile images
# (under their prefix only) and use the key that encrypts them.
data "aws_iam_policy_document" "serve" {
  statement {
    sid       = "ProfileImages"
    actions   = ["s3:PutObject", "s3:PutObjectAcl", "s3:GetObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.images.arn}/profile-images/*"]
  }

  statement {
    sid       = "EncryptedProfileImages"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role_policy" "serve" {
  name   = "profile-images"
  role   = aws_iam_role.serve.id
  policy = data.aws_iam_policy_document.serve.json
}
