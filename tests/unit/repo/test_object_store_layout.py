"""Object-storage repositories without a store: URLs and Triton's S3 path rules, the layout of a version,
config.pbtxt as the commit pointer."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from triton_repo.core.errors import TritonRepoError
from triton_repo.core.storage import ObjectStoreUrl, parse_repository
from triton_repo.repo.store.layout import keep_versions, pointer_config, store_files, store_key, version_of


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


def test_every_file_of_a_version_lands_in_that_versions_own_keys():
    assert store_key("config.pbtxt", 4) is None  # written as the pointer
    assert store_key("1/model.onnx", 4) == "4/model.onnx"
    assert store_key("warmup/ids", 4) == "warmup/4/ids"
    assert store_key("labels.txt", 4) == "4/labels.txt"
    assert store_files({"config.pbtxt": "a", "1/model.py": "b", "warmup/x": "c"}, 7) == {
        "7/model.py": "b",
        "warmup/7/x": "c",
    }
    assert [version_of(k) for k in ("7/model.py", "warmup/7/x", "config.pbtxt", "warmup/x")] == [
        7,
        7,
        None,
        None,
    ]


def staged_config() -> str:
    config = mc.ModelConfig(name="m", backend="python", max_batch_size=8)
    config.version_policy.latest.num_versions = 2
    config.output.add(name="logits", data_type=mc.TYPE_FP32, dims=[10], label_filename="labels.txt")
    warmup = config.model_warmup.add(name="w", batch_size=1)
    warmup.inputs["x"].data_type = mc.TYPE_FP32
    warmup.inputs["x"].dims.extend([4])
    warmup.inputs["x"].input_data_file = "x"
    return text_format.MessageToString(config)


def test_the_pointer_names_exactly_the_served_versions_and_their_own_files():
    base = staged_config()
    assert keep_versions(base) == 2
    pointer = text_format.Parse(pointer_config(base, [3, 5]), mc.ModelConfig())
    assert list(pointer.version_policy.specific.versions) == [3, 5]
    assert not pointer.version_policy.HasField("latest")
    assert pointer.model_warmup[0].inputs["x"].input_data_file == "5/x"  # warmup/5/x
    assert pointer.output[0].label_filename == "5/labels.txt"
    rolled_back = text_format.Parse(pointer_config(base, [3]), mc.ModelConfig())
    assert list(rolled_back.version_policy.specific.versions) == [3]
    assert rolled_back.output[0].label_filename == "3/labels.txt"
