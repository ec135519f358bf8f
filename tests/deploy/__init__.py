"""The deployment files (deploy/): validated offline in `make test`; the image is tried for
real by `make deploy-test` (image_replicas.py)."""
