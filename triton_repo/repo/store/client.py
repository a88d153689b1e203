"""The S3 calls publishing needs, with boto3: credentials, uploads that never overwrite, read-back hashes.

Credentials come from boto3's standard chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN,
or a profile in ~/.aws); they are never printed. Every failure becomes one line that tells wrong
credentials, a missing bucket, missing permissions and an unreachable endpoint apart, which Triton's own
message ("Unable to create S3 filesystem client. Check account credentials") does not.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from triton_repo.core.errors import TritonRepoError
from triton_repo.core.storage import ObjectStoreUrl

MULTIPART_THRESHOLD = 16 * 1024 * 1024  # larger files go up in parts, with progress
PART_SIZE = 8 * 1024 * 1024  # S3's minimum part is 5 MiB
CHUNK = 1024 * 1024

CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
    "InvalidClientTokenId",
}


class ObjectStoreError(TritonRepoError):
    """The object store refused or could not be reached (credentials, bucket, permissions, network)."""


class WriteConflict(ObjectStoreError):
    """A conditional write refused (412 PreconditionFailed, or 409 when two raced): the key was taken, or
    changed since it was read. The lease and the manifest act on it; it never reaches the user as is."""


class ObjectExists(WriteConflict):
    """An upload found its key taken: publishing never overwrites a model's object."""


CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}  # 412; 409 on AWS when two race


@dataclass(frozen=True)
class Credentials:
    """Resolved credentials, for a child process's environment (tritonserver); never printed."""

    access_key: str
    secret_key: str
    token: str | None
    region: str

    def environment(self) -> dict[str, str]:
        env = {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,  # what Triton reads (not AWS_REGION)
            "AWS_REGION": self.region,
        }
        if self.token:
            env["AWS_SESSION_TOKEN"] = self.token
        return env

    def __repr__(self) -> str:
        return f"Credentials(region={self.region!r}, secret not shown)"


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: datetime.datetime


class Store:
    """One bucket through one boto3 client; `url` names the repository in messages."""

    def __init__(self, url: ObjectStoreUrl, profile: str | None = None) -> None:
        import boto3
        import botocore.exceptions
        from botocore.config import Config

        self.url = url
        try:
            self.session = boto3.Session(profile_name=profile)
        except botocore.exceptions.ProfileNotFound:
            raise ObjectStoreError(
                f"AWS profile '{profile}' is not in ~/.aws/config or ~/.aws/credentials; name another "
                "with --aws-profile, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from None
        self.region = self.session.region_name or "us-east-1"
        self.client = self.session.client(
            "s3",
            endpoint_url=url.endpoint,
            region_name=self.region,
            config=Config(
                s3={"addressing_style": "path"},  # what Triton uses (no virtual-host buckets)
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            ),
        )

    # -- credentials and access ---------------------------------------------------------------------

    def credentials(self) -> Credentials:
        found = self.session.get_credentials()
        if found is None:
            raise self._no_credentials()
        frozen = found.get_frozen_credentials()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token, self.region)

    def check_access(self) -> None:
        """List one key under the prefix: wrong credentials, a missing bucket, no permission and an
        unreachable endpoint each fail here with their own line."""
        with self.errors("list"):
            self.client.list_objects_v2(Bucket=self.url.bucket, Prefix=self.url.key() + "/", MaxKeys=1)

    def _no_credentials(self) -> ObjectStoreError:
        return ObjectStoreError(
            f"{self.url}: no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and "
            "AWS_SESSION_TOKEN for temporary ones), or name a profile with --aws-profile"
        )

    def errors(self, action: str, key: str | None = None):
        """A context manager turning boto3's exceptions into one-line ObjectStoreErrors."""
        return _Translate(self, action, key)

    # -- reading ------------------------------------------------------------------------------------

    def list(self, prefix: str) -> list[StoredObject]:
        """Every object whose key starts with `prefix` (all pages)."""
        found: list[StoredObject] = []
        with self.errors("list", prefix):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.url.bucket, Prefix=prefix
            ):
                found += [
                    StoredObject(o["Key"], o["Size"], o["LastModified"]) for o in page.get("Contents", [])
                ]
        return found

    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        return self.read_with_etag(key)[0]

    def read_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        """The object's bytes and ETag (for a later write `if_match`), or (None, None) when absent."""
        with self.errors("read", key):
            try:
                answer = self.client.get_object(Bucket=self.url.bucket, Key=key)
            except self.client.exceptions.NoSuchKey:
                return None, None
            return answer["Body"].read(), answer.get("ETag")

    def sha256(self, key: str) -> str | None:
        """sha256 of the object's content, streamed; None when it does not exist."""
        digest = hashlib.sha256()
        with self.errors("read", key):
            try:
                body = self.client.get_object(Bucket=self.url.bucket, Key=key)["Body"]
            except self.client.exceptions.NoSuchKey:
                return None
            for chunk in iter(lambda: body.read(CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest()

    def modified(self, key: str) -> datetime.datetime:
        with self.errors("read", key):
            return self.client.head_object(Bucket=self.url.bucket, Key=key)["LastModified"]

    # -- writing ------------------------------------------------------------------------------------

    def write(self, key: str, data: bytes, overwrite: bool = True, if_match: str | None = None) -> str:
        """One PUT; the new ETag. With overwrite=False the key must be free (If-None-Match: *: else
        ObjectExists); with `if_match` it must still hold that ETag (If-Match: else WriteConflict)."""
        extra: dict[str, str] = {}
        if if_match:
            extra["IfMatch"] = if_match
        elif not overwrite:
            extra["IfNoneMatch"] = "*"
        action = "replace" if if_match else "write"
        with self.errors(action, key):
            return self.client.put_object(Bucket=self.url.bucket, Key=key, Body=data, **extra).get("ETag", "")

    def upload_new(self, path: Path, key: str, progress: Callable[[int, int], None] | None = None) -> None:
        """Upload a file to a key that must not exist yet; large files in parts, `progress(done, total)`
        after each part. An interrupted multipart upload leaves no object (only parts S3 discards)."""
        size = path.stat().st_size
        if size <= MULTIPART_THRESHOLD:
            self.write(key, path.read_bytes(), overwrite=False)
            return
        with self.errors("write", key):
            upload = self.client.create_multipart_upload(Bucket=self.url.bucket, Key=key)["UploadId"]
            try:
                parts = []
                for number, (done, chunk) in enumerate(_parts(path), start=1):
                    answer = self.client.upload_part(
                        Bucket=self.url.bucket, Key=key, UploadId=upload, PartNumber=number, Body=chunk
                    )
                    parts.append({"ETag": answer["ETag"], "PartNumber": number})
                    if progress is not None:
                        progress(done, size)
                self.client.complete_multipart_upload(
                    Bucket=self.url.bucket,
                    Key=key,
                    UploadId=upload,
                    MultipartUpload={"Parts": parts},
                    IfNoneMatch="*",
                )
            except BaseException:
                self.client.abort_multipart_upload(Bucket=self.url.bucket, Key=key, UploadId=upload)
                raise

    def delete(self, keys: list[str]) -> None:
        """Delete keys, 1000 per request (S3's limit)."""
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            with self.errors("delete", batch[0]["Key"]):
                answer = self.client.delete_objects(
                    Bucket=self.url.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise ObjectStoreError(
                    f"s3://{self.url.bucket}/{first['Key']}: could not delete it ({first.get('Code')}: "
                    f"{first.get('Message')}); check the credentials' s3:DeleteObject permission"
                )


def _parts(path: Path) -> Iterator[tuple[int, bytes]]:
    done = 0
    with path.open("rb") as handle:
        while chunk := handle.read(PART_SIZE):
            done += len(chunk)
            yield done, chunk


class _Translate:
    """boto3 exceptions -> one line naming what failed and how to fix it."""

    def __init__(self, store: Store, action: str, key: str | None) -> None:
        self.store, self.action, self.key = store, action, key

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None or isinstance(error, TritonRepoError):
            return False
        import botocore.exceptions as bx

        url = self.store.url
        where = f"s3://{url.bucket}/{self.key}" if self.key else str(url)
        if isinstance(error, bx.NoCredentialsError | bx.PartialCredentialsError):
            raise self.store._no_credentials() from None
        if isinstance(error, bx.EndpointConnectionError | bx.ConnectTimeoutError | bx.ReadTimeoutError):
            endpoint = url.endpoint or "the AWS S3 endpoint"
            raise ObjectStoreError(
                f"{url}: could not reach {endpoint} to {self.action} ({type(error).__name__}); check the "
                "host and port in the URL and that the object store is running"
            ) from None
        if not isinstance(error, bx.ClientError):
            return False
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in CREDENTIAL_CODES:
            raise ObjectStoreError(
                f"{url}: the object store rejected the credentials ({code}); check AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or --aws-profile) for this endpoint"
            ) from None
        if code == "NoSuchBucket" or (status == 404 and self.key is None):
            raise ObjectStoreError(
                f"{url}: bucket '{url.bucket}' does not exist; create it (aws s3 mb s3://{url.bucket}) or "
                "fix the bucket name in the URL"
            ) from None
        if code in CONFLICT_CODES and self.action == "write":
            raise ObjectExists(
                f"{where} already exists; publishing never overwrites a model's object (another publish "
                "into this repository at the same time?)"
            ) from None
        if self.action == "replace" and (code in CONFLICT_CODES or code == "NoSuchKey" or status == 404):
            # If-Match on a key deleted since: AWS answers 404 NoSuchKey, SeaweedFS 412
            raise WriteConflict(
                f"{where} changed since it was read (If-Match refused); another publisher wrote it"
            ) from None
        if code in ("AccessDenied", "403") or status == 403:
            raise ObjectStoreError(
                f"{where}: access denied to {self.action} ({code}); the credentials are valid but lack the "
                f"permission (s3:ListBucket, s3:GetObject, s3:PutObject, s3:DeleteObject on '{url.bucket}')"
            ) from None
        message = error.response.get("Error", {}).get("Message", "")
        raise ObjectStoreError(f"{where}: could not {self.action} ({code}: {message})") from None
