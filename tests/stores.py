"""Direct clients of the session stack's stores, for tests that look behind the services."""

from __future__ import annotations

from typing import Any

import boto3
from trackd_platform.stack import EmbeddedStack

BUCKET = "trackd-artifacts"


def s3(stack: EmbeddedStack) -> Any:
    """A boto3 S3 client with the stack's generated credentials (the embedded S3 refuses others)."""
    env = stack.infra_env()
    return boto3.client("s3", endpoint_url=stack.s3_endpoint, aws_access_key_id=env["TRACKD_S3_ACCESS_KEY"],
                        aws_secret_access_key=env["TRACKD_S3_SECRET_KEY"], region_name="us-east-1")
