"""Reading a document's bytes from where the manifest said it is: a local path or an S3 URI."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from legaldoc.config import Settings
from legaldoc.errors import ConfigurationError, DataError, TransientError


def read_source(source: str, settings: Settings) -> bytes:
    """The bytes of `source`; missing files are DATA errors, unreachable stores TRANSIENT."""
    if source.startswith("s3://"):
        return _read_s3(source, settings)
    try:
        return Path(source).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{source} does not exist any more", hint="restore the file or remove it from the manifest") from None
    except IsADirectoryError:
        raise DataError(f"{source} is a folder, not a document", hint="use a glob entry for folders") from None
    except PermissionError:
        raise ConfigurationError(f"{source} cannot be read: permission denied",
                                 hint="give the worker's user read access") from None  # fmt: skip


def _read_s3(uri: str, settings: Settings) -> bytes:
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    except ImportError:
        raise ConfigurationError(f"{uri} needs boto3", hint="pip install 'legaldoc[aws]'") from None
    parts = urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url or None)
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        if head["ContentLength"] > settings.max_file_mb * 1024 * 1024:
            raise DataError(f"{uri} is {head['ContentLength'] / 1e6:.0f} MB, over the {settings.max_file_mb:.0f} MB limit",
                            hint="raise LEGALDOC_MAX_FILE_MB or split the file")  # fmt: skip
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except NoCredentialsError:
        raise ConfigurationError(f"{uri}: no AWS credentials", hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID") from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NoSuchBucket"):
            raise DataError(f"{uri} does not exist", hint="check the bucket and key in the manifest") from None
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise ConfigurationError(f"{uri}: access denied ({code})", hint="check the worker's AWS credentials") from None
        raise TransientError(f"{uri}: S3 answered {code or exc}") from None
    except BotoCoreError as exc:
        raise TransientError(f"{uri}: {exc}") from None
