"""Object-storage repositories without a store: URLs and Triton's S3 path rules, the layout of a version,
config.pbtxt as the commit pointer."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from triton_repo.core.errors import TritonRepoError
from triton_repo.core.storage import ObjectStoreUrl, parse_repository
from triton_repo.repo.store.layout import (
    config_of,
    configs_of,
    held,
    keep_versions,
    numbered,
    pointer_config,
    store_files,
    store_key,
    version_files,
    version_of,
)


def test_a_local_folder_stays_a_path_and_s3_urls_are_parsed():
    assert parse_repository("model_repository") == Path("model_repository")
    url = parse_repository("s3://http://127.0.0.1:9000/models/prod/v1/")
    assert url == ObjectStoreUrl("models", "prod/v1", "http://127.0.0.1:9000")
    assert str(url) == "s3://http://127.0.0.1:9000/models/prod/v1"
    assert url.key("m", "3/model.onnx") == "prod/v1/m/3/model.onnx"
    assert (
        str(parse_repository("s3://models")) == "s3://models" and parse_repository("s3://models").key() == ""
    )


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("s3://Models/prod", "bucket 'Models' is not a name Triton's S3 reader accepts"),
        ("s3://my_bucket/prod", "bucket 'my_bucket'"),
        ("s3://http://127.0.0.1/models/prod", "the endpoint must be http://HOST:PORT"),
        ("s3://models/prod+1", "the prefix part 'prod+1' has characters Triton's S3 reader rejects"),
        ("gs://models/prod", "publishes to s3:// only"),
        ("s3://", "no bucket"),
    ],
)
def test_a_url_triton_would_refuse_is_refused_with_one_line_naming_the_part(url, said):
    with pytest.raises(TritonRepoError) as error:
        parse_repository(url)
    assert said in str(error.value) and "\n" not in str(error.value)


def test_a_versions_files_land_in_its_own_keys_and_its_configs_under_the_configs_first_version():
    assert store_key("config.pbtxt", 4) is None  # written as the pointer
    assert store_key("1/model.onnx", 4) == "4/model.onnx"
    assert store_key("warmup/ids", 4) == "warmup/4/ids"
    assert store_key("labels.txt", 4) == "labels/4/labels.txt"
    assert store_key("warmup/ids", 6, config_at=4) == "warmup/4/ids"  # a later version of the same config
    assert store_key("1/model.py", 6, config_at=4) == "6/model.py"
    staged = {"config.pbtxt": "a", "1/model.py": "b", "warmup/x": "c", "labels.txt": "d"}
    assert store_files(staged, 7) == {"7/model.py": "b", "warmup/7/x": "c", "labels/7/labels.txt": "d"}
    assert version_files(staged, 7) == {"7/model.py": "b"}
    keys = ("7/model.py", "warmup/7/x", "labels/7/l.txt", "config.pbtxt", "warmup/x", "labels.txt")
    assert [version_of(k) for k in keys] == [7, None, None, None, None, None]
    assert [config_of(k) for k in keys] == [None, 7, 7, None, None, None]
    assert [numbered(k) for k in keys] == [7, 7, 7, None, None, None]


def test_an_entry_holds_its_versions_and_its_configs_objects_in_either_layout():
    entry = {"versions": [5, 6], "config_at": 4}
    assert held(entry, [5, 6], "6/model.py") and held(entry, [5, 6], "warmup/4/x")
    assert not held(entry, [5, 6], "4/model.py") and not held(entry, [5, 6], "warmup/6/x")
    older = {"versions": [5, 6]}  # written before config_at: each version's warmup data under its number
    assert held(older, [5, 6], "warmup/6/x") and held(older, [6], "6/labels.txt")
    assert not held(older, [6], "warmup/5/x")
    assert configs_of(entry, [6]) == [4] and configs_of(older, [6]) == [6]


def staged_config() -> str:
    config = mc.ModelConfig(name="m", backend="python", max_batch_size=8)
    config.version_policy.latest.num_versions = 2
    config.output.add(name="logits", data_type=mc.TYPE_FP32, dims=[10], label_filename="labels.txt")
    warmup = config.model_warmup.add(name="w", batch_size=1)
    warmup.inputs["x"].data_type = mc.TYPE_FP32
    warmup.inputs["x"].dims.extend([4])
    warmup.inputs["x"].input_data_file = "x"
    return text_format.MessageToString(config)


def test_the_pointer_names_exactly_the_served_versions_and_their_configs_files():
    base = staged_config()
    assert keep_versions(base) == 2
    pointer = text_format.Parse(pointer_config(base, [3, 5]), mc.ModelConfig())
    assert list(pointer.version_policy.specific.versions) == [3, 5]
    assert not pointer.version_policy.HasField("latest")
    assert pointer.model_warmup[0].inputs["x"].input_data_file == "5/x"  # warmup/5/x
    assert pointer.output[0].label_filename == "5/labels.txt"
    older = text_format.Parse(pointer_config(base, [3]), mc.ModelConfig())  # older layout: the newest's
    assert older.model_warmup[0].inputs["x"].input_data_file == "3/x"
    assert older.output[0].label_filename == "3/labels.txt"


def test_pointers_of_one_config_differ_only_in_the_versions_they_name():
    """What lets Triton load a new version beside the served ones without reloading them: its
    ConfigChangeRequiresReload ignores version_policy and nothing else."""
    base = staged_config()
    first, second = (text_format.Parse(pointer_config(base, v, 3), mc.ModelConfig()) for v in ([3], [3, 4]))
    assert first.model_warmup[0].inputs["x"].input_data_file == "3/x"  # warmup/3/x
    assert first.output[0].label_filename == "labels/3/labels.txt"
    first.ClearField("version_policy")
    second.ClearField("version_policy")
    assert first == second
    rolled_back = text_format.Parse(pointer_config(base, [3]), mc.ModelConfig())
    assert list(rolled_back.version_policy.specific.versions) == [3]
    assert rolled_back.output[0].label_filename == "3/labels.txt"
