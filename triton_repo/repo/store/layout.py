"""How a model lives in object storage, and its config.pbtxt as the commit pointer.

Triton sees a version directory as soon as its first object exists, and a load that meets a
half-uploaded python-backend version hangs. So in object storage every version N is immutable and
self-contained, and config.pbtxt is the one object that decides what is served:

    <model>/config.pbtxt        the staged config + version_policy { specific { versions: [...] } }
    <model>/N/...               version N's files, and the labels files of its config
    <model>/warmup/N/...        version N's warmup data

A complete new version is ignored until config.pbtxt names it (one PUT); rollback is a PUT naming the
old versions. Warmup data and labels are per version (the pointer names the newest served version's),
so a config change never overwrites an object an older version's config refers to.
"""

from __future__ import annotations

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from triton_repo.repo.config import WARMUP_DIR
from triton_repo.repo.writer import VERSION

CONFIG = "config.pbtxt"


def store_key(staged_relative: str, version: int) -> str | None:
    """Where a staged file goes for version `version` (relative to the model); None for config.pbtxt,
    which is written as the pointer."""
    if staged_relative == CONFIG:
        return None
    head, _, rest = staged_relative.partition("/")
    if head == VERSION and rest:
        return f"{version}/{rest}"
    if head == WARMUP_DIR and rest:
        return f"{WARMUP_DIR}/{version}/{rest}"
    return f"{version}/{staged_relative}"  # labels files, beside the version's own files


def store_files(staged_files: dict[str, str], version: int) -> dict[str, str]:
    """The staged files (relative path -> sha256) as version `version`'s objects (relative -> sha256)."""
    placed = {store_key(relative, version): digest for relative, digest in staged_files.items()}
    placed.pop(None, None)
    return dict(sorted(placed.items()))


def config_files(staged_files: dict[str, str]) -> dict[str, str]:
    """The files that make a config: config.pbtxt, warmup data, labels (all outside the version dir).
    Versions share a config (and can be served together) only when these are identical."""
    return {k: v for k, v in staged_files.items() if not k.startswith(f"{VERSION}/")}


def version_of(relative: str) -> int | None:
    """The version an object belongs to ('3/model.onnx' and 'warmup/3/ids' -> 3), None for others."""
    parts = relative.split("/")
    if parts[0].isdigit() and len(parts) > 1:
        return int(parts[0])
    if parts[0] == WARMUP_DIR and len(parts) > 2 and parts[1].isdigit():
        return int(parts[1])
    return None


def pointer_config(base_config: str, served: list[int]) -> str:
    """config.pbtxt naming exactly `served` (the newest last): the staged config with
    version_policy specific, and its warmup data and labels read from the newest served version."""
    config = text_format.Parse(base_config, mc.ModelConfig())
    newest = served[-1]
    config.version_policy.Clear()
    config.version_policy.specific.versions.extend(served)
    for warmup in config.model_warmup:
        for data in warmup.inputs.values():
            if data.input_data_file:
                data.input_data_file = f"{newest}/{data.input_data_file}"
    for output in config.output:
        if output.label_filename:
            output.label_filename = f"{newest}/{output.label_filename}"
    return text_format.MessageToString(config)


def keep_versions(base_config: str) -> int:
    """How many versions to serve together: the staged config's version_policy latest K (default 1)."""
    policy = text_format.Parse(base_config, mc.ModelConfig()).version_policy
    return policy.latest.num_versions if policy.HasField("latest") else 1
