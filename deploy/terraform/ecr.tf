resource "aws_ecr_repository" "studyhall" {
  name = var.name
  # A tag names one build forever: rollouts and rollbacks name exact images.
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.main.arn
  }
}

resource "aws_ecr_lifecycle_policy" "studyhall" {
  repository = aws_ecr_repository.studyhall.name

  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the 50 newest images (rollback targets)"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = 50
      }
      action = { type = "expire" }
    }]
  })
}
