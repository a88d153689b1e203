"""How a model lives in object storage, and its config.pbtxt as the commit pointer.

Triton sees a version directory as soon as its first object exists, and a load that meets a
half-uploaded python-backend version hangs. So in object storage every version N is immutable and
self-contained, and config.pbtxt is the one object that decides what is served:

    <model>/config.pbtxt        the staged config + version_policy { specific { versions: [...] } }
    <model>/N/...               version N's files
    <model>/warmup/C/...        the warmup data of the config first published with version C
    <model>/labels/C/...        the labels files of that config

A complete new version is ignored until config.pbtxt names it (one PUT); rollback is a PUT naming the
old versions. Warmup data and labels belong to a config, not to a version: they are uploaded once, with
the first version of that config, and every later version of the same config leaves them untouched, so
the pointer of the next publish differs from the last only in its version_policy. Triton (since 24.08)
then loads the new version beside the served ones and reloads none of them: a stateful model's live
sequences keep their state. A config change never overwrites an object an older config refers to.

Manifests written before this layout (no `config_at` in the entry) kept the warmup data of each version
under warmup/N/ and its labels inside N/; they are still read, served and rolled back to.
"""

from __future__ import annotations

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from triton_repo.repo.config import WARMUP_DIR
from triton_repo.repo.writer import VERSION

CONFIG = "config.pbtxt"


LABELS_DIR = "labels"


def store_key(staged_relative: str, version: int, config_at: int | None = None) -> str | None:
    """Where a staged file goes when published as version `version` of the config first published with
    version `config_at` (default: this one); None for config.pbtxt, which is written as the pointer."""
    if staged_relative == CONFIG:
        return None
    config_at = version if config_at is None else config_at
    head, _, rest = staged_relative.partition("/")
    if head == VERSION and rest:
        return f"{version}/{rest}"
    if head == WARMUP_DIR and rest:
        return f"{WARMUP_DIR}/{config_at}/{rest}"
    return f"{LABELS_DIR}/{config_at}/{staged_relative}"  # labels files


def store_files(staged_files: dict[str, str], version: int, config_at: int | None = None) -> dict[str, str]:
    """The staged files (relative path -> sha256) as objects (relative -> sha256): version `version`'s
    own, and the config's (warmup data, labels) under `config_at`."""
    placed = {store_key(relative, version, config_at): digest for relative, digest in staged_files.items()}
    placed.pop(None, None)
    return dict(sorted(placed.items()))


def version_files(staged_files: dict[str, str], version: int) -> dict[str, str]:
    """Only the objects of version `version`'s own directory."""
    return {k: v for k, v in store_files(staged_files, version).items() if version_of(k) == version}


def config_files(staged_files: dict[str, str]) -> dict[str, str]:
    """The files that make a config: config.pbtxt, warmup data, labels (all outside the version dir).
    Versions share a config (and can be served together) only when these are identical."""
    return {k: v for k, v in staged_files.items() if not k.startswith(f"{VERSION}/")}


def version_of(relative: str) -> int | None:
    """The version whose directory holds an object ('3/model.onnx' -> 3), None for others."""
    parts = relative.split("/")
    if parts[0].isdigit() and len(parts) > 1:
        return int(parts[0])
    return None


def config_of(relative: str) -> int | None:
    """The config an object belongs to ('warmup/3/ids', 'labels/3/labels.txt' -> 3), None for others."""
    parts = relative.split("/")
    if parts[0] in (WARMUP_DIR, LABELS_DIR) and len(parts) > 2 and parts[1].isdigit():
        return int(parts[1])
    return None


def numbered(relative: str) -> int | None:
    """The version or config number in an object's key; None for config.pbtxt and foreign objects."""
    found = version_of(relative)
    return found if found is not None else config_of(relative)


def configs_of(entry: dict, versions: list[int]) -> list[int]:
    """The config numbers whose objects serve `versions` of a manifest entry: its `config_at`; an entry
    of the older layout kept each version's warmup data under that version's number."""
    return [entry["config_at"]] if "config_at" in entry else list(versions)


def held(entry: dict, versions: list[int], relative: str) -> bool:
    """Whether an object (relative to the model) belongs to `versions` of the entry, or to their config."""
    return version_of(relative) in versions or config_of(relative) in configs_of(entry, versions)


def pointer_config(base_config: str, served: list[int], config_at: int | None = None) -> str:
    """config.pbtxt naming exactly `served` (the newest last): the staged config with version_policy
    specific, its warmup data and labels read from the config's own objects (`config_at`; None: the
    older layout's, under the newest served version)."""
    config = text_format.Parse(base_config, mc.ModelConfig())
    newest = served[-1]
    config.version_policy.Clear()
    config.version_policy.specific.versions.extend(served)
    warmup_at = newest if config_at is None else config_at
    labels_at = f"{newest}" if config_at is None else f"{LABELS_DIR}/{config_at}"
    for warmup in config.model_warmup:
        for data in warmup.inputs.values():
            if data.input_data_file:
                data.input_data_file = f"{warmup_at}/{data.input_data_file}"
    for output in config.output:
        if output.label_filename:
            output.label_filename = f"{labels_at}/{output.label_filename}"
    return text_format.MessageToString(config)


def keep_versions(base_config: str) -> int:
    """How many versions to serve together: the staged config's version_policy latest K (default 1)."""
    policy = text_format.Parse(base_config, mc.ModelConfig()).version_policy
    return policy.latest.num_versions if policy.HasField("latest") else 1
