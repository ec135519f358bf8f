"""Object storage (a folder or S3), safe local file copies, and the vault's key layout; the only
package that imports boto3/botocore. May import ``core`` and ``errors``; see docs/design.md,
"Architecture"."""
