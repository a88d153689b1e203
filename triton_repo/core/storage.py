"""Where a repository lives: a local folder, or an S3 prefix in Triton's own URL form.

Triton reads `s3://bucket/prefix` (AWS) and `s3://http(s)://host:port/bucket/prefix` (any S3-compatible
endpoint). With an endpoint, its path parser (core r24.10, src/filesystem/implementations/s3.h) accepts a
bucket of `[0-9a-z.-]` and path parts of `[0-9a-zA-Z._-]` only, and reports anything else with the same
"Unable to create S3 filesystem client. Check account credentials" as wrong credentials. So every name
(bucket, prefix, model, file) is checked here, before anything is uploaded, with one line that says which.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from triton_repo.core.errors import TritonRepoError

BUCKET_RULE = re.compile(r"[0-9a-z.\-]{3,63}")
PART_RULE = re.compile(r"[0-9a-zA-Z.\-_]+")
HOST_RULE = re.compile(r"[0-9a-zA-Z\-.]+")
OTHER_STORES = ("gs://", "as://")


@dataclass(frozen=True)
class ObjectStoreUrl:
    """An S3 repository: the endpoint (None: AWS), the bucket and the key prefix (no slashes at the ends)."""

    bucket: str
    prefix: str
    endpoint: str | None = None  # "http://host:port" or "https://host:port"

    def __str__(self) -> str:
        """Triton's --model-repository value."""
        where = f"{self.endpoint}/" if self.endpoint else ""
        return f"s3://{where}{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, *parts: str) -> str:
        """The object key of a path below the repository (parts joined with '/')."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def url_of(self, *parts: str) -> str:
        """A path below the repository as a URL, for messages."""
        return "/".join([str(self), *(p.strip("/") for p in parts)])

    @property
    def label(self) -> str:
        """A short file-system-safe name for local state (locks, staging) kept per repository."""
        text = f"{self.endpoint or 'aws'}-{self.bucket}-{self.prefix}"
        return re.sub(r"[^0-9a-zA-Z.\-_]+", "_", text).strip("_")


# Where a repository is, as the user named it (repo.repository.open_repository opens one from it).
Location = Path | ObjectStoreUrl


def is_object_store(value: str) -> bool:
    return value.startswith(("s3://", *OTHER_STORES))


def parse_repository(value: str | Path) -> Location:
    """A local folder as a Path; `s3://...` as an ObjectStoreUrl (checked against Triton's rules)."""
    text = str(value)
    if not is_object_store(text):
        return Path(value)
    if text.startswith(OTHER_STORES):
        raise TritonRepoError(
            f"{text}: triton-repo publishes to s3:// only (Triton also reads gs:// and as://); use "
            "s3://bucket/prefix or s3://http://host:port/bucket/prefix"
        )
    return parse_s3_url(text)


def parse_s3_url(text: str) -> ObjectStoreUrl:
    """`s3://[http(s)://host:port/]bucket[/prefix]` -> ObjectStoreUrl; a bad part is named in one line."""
    rest = text.removeprefix("s3://")
    endpoint = None
    match = re.match(r"(https?)://([^/]*)/?(.*)", rest)
    if match:
        scheme, host_port, rest = match.groups()
        host, _, port = host_port.partition(":")
        if not HOST_RULE.fullmatch(host or "-") or not host or not port.isdigit():
            raise TritonRepoError(
                f"{text}: the endpoint must be {scheme}://HOST:PORT (Triton needs the port), e.g. "
                f"s3://{scheme}://127.0.0.1:9000/bucket/prefix"
            )
        endpoint = f"{scheme}://{host}:{int(port)}"
    parts = [p for p in rest.split("/") if p]
    if not parts:
        raise TritonRepoError(
            f"{text}: no bucket; use s3://bucket/prefix or s3://http://host:port/bucket/prefix"
        )
    bucket, prefix_parts = parts[0], parts[1:]
    check_bucket(bucket, text)
    for part in prefix_parts:
        check_part(part, f"{text}: the prefix part '{part}'")
    return ObjectStoreUrl(bucket, "/".join(prefix_parts), endpoint)


def check_bucket(bucket: str, where: str) -> None:
    if not BUCKET_RULE.fullmatch(bucket) or bucket.startswith((".", "-")) or ".." in bucket:
        raise TritonRepoError(
            f"{where}: bucket '{bucket}' is not a name Triton's S3 reader accepts: use 3-63 characters "
            "from a-z, 0-9, '.', '-' (lowercase, starting with a letter or digit)"
        )


def check_part(part: str, what: str) -> None:
    """One path part (prefix part, model name, file name) against Triton's `[0-9a-zA-Z._-]`."""
    if not PART_RULE.fullmatch(part) or part in (".", ".."):
        raise TritonRepoError(
            f"{what} has characters Triton's S3 reader rejects: use only A-Z, a-z, 0-9, '.', '-', '_' "
            "(Triton would fail with 'Unable to create S3 filesystem client')"
        )


def check_relative_path(url: ObjectStoreUrl, model: str, relative: str) -> None:
    """Every part of a model's file path must pass Triton's rule (checked before any upload)."""
    check_part(model, f"{url}: model name '{model}'")
    for part in relative.split("/"):
        check_part(part, f"{url.url_of(model, relative)}: the part '{part}'")


def repository_id(repository: Location) -> str:
    """How a server's state and Triton's --model-repository name a repository: the resolved folder, or
    the URL."""
    return str(repository) if isinstance(repository, ObjectStoreUrl) else str(repository.resolve())
