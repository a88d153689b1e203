"""The Repository protocol: opened from what the user names, a local folder published into, read back,
rolled back, checked for serving; object storage's choices that need no bucket."""

from __future__ import annotations

import json

import pytest

from tests.unit.repo.test_publish import changed, make_model
from tests.unit.repo.test_writer import stage
from triton_repo.builders.report import REPORT_JSON, REPORT_MD, read_report, write_report
from triton_repo.core.errors import ServerError, TritonRepoError
from triton_repo.core.locks import repository_lock
from triton_repo.core.storage import parse_repository
from triton_repo.repo.repository import (
    LocalRepository,
    StoreAccess,
    StoreRepository,
    open_repository,
)
from triton_repo.repo.writer import staging_root
from triton_repo.serve.server import ModelControlMode


@pytest.fixture
def model(tmp_path):
    return make_model(tmp_path)


@pytest.fixture
def folder(tmp_path):
    return open_repository(tmp_path / "repo", tmp_path / "work")


def never_asked() -> StoreAccess:
    raise AssertionError("a local folder asked for object-storage access")


def test_a_path_opens_a_local_folder_without_asking_for_store_access(tmp_path):
    opened = open_repository(parse_repository(str(tmp_path / "repo")), tmp_path / "work", never_asked)
    assert isinstance(opened, LocalRepository)
    assert str(opened) == str(tmp_path / "repo") and opened.stand_in == opened.location == tmp_path / "repo"


def test_an_s3_url_opens_object_storage_standing_in_the_work_dir(tmp_path):
    url = parse_repository("s3://http://127.0.0.1:9000/models/prod")
    access = StoreAccess("ci", ("http://10.0.0.5:8000/",), (("key", "v"),))
    opened = open_repository(url, tmp_path / "work", lambda: access)
    assert isinstance(opened, StoreRepository)
    assert str(opened) == "s3://http://127.0.0.1:9000/models/prod" and opened.location == url
    assert opened.stand_in == (tmp_path / "work" / "object-store" / url.label).resolve()
    assert opened.target.servers == ("http://10.0.0.5:8000",) and opened.target.profile == "ci"
    assert opened.publish_step() == "publish into s3://http://127.0.0.1:9000/models/prod"


def test_a_local_folder_publishes_reads_its_manifest_and_rolls_back(model, folder):
    assert folder.manifest() is None
    first = folder.publish([stage(model, folder.stand_in)], {"triton-repo": "test"})
    assert first.versions == {"tiny_fp32": 1} and not first.loaded
    second = folder.publish([stage(changed(model, 1), folder.stand_in)], {"triton-repo": "test"})
    assert second.versions == {"tiny_fp32": 2} and second.kept == {"tiny_fp32": [1, 2]}
    manifest = folder.manifest()
    assert manifest["tools"] == {"triton-repo": "test"} and manifest["models"]["tiny_fp32"]["versions"] == [
        1,
        2,
    ]
    assert folder.served_models() == ["tiny_fp32"]
    assert folder.verify() == len(manifest["models"]["tiny_fp32"]["files"])

    rolled = folder.rollback(["tiny_fp32"])
    assert rolled.moves == {"tiny_fp32": (2, 1)}
    assert rolled.served == "served from the next `triton-repo serve`"  # no server runs on it
    assert folder.manifest()["models"]["tiny_fp32"]["versions"] == [1]
    assert not staging_root(folder.stand_in).exists()


def test_a_rollback_fails_at_once_while_another_publish_holds_the_lock(model, folder):
    folder.publish([stage(model, folder.stand_in)], {})
    with repository_lock(folder.stand_in), pytest.raises(TritonRepoError, match="another triton-repo"):
        folder.rollback(["tiny_fp32"])


def test_a_folder_without_a_manifest_has_no_served_models_to_name(folder):
    with pytest.raises(TritonRepoError, match="no repository manifest; build the repository first"):
        folder.served_models()


def test_the_build_report_is_merged_and_read_back_from_the_repository(folder):
    folder.stand_in.mkdir(parents=True)
    write_report(folder, {"b": {"variants": []}})
    (folder.stand_in / REPORT_JSON).write_text(
        json.dumps({"format": 1, "models": {"a": {"target": "cpu"}, **read_report(folder)["models"]}})
    )
    write_report(folder, {"c": {"variants": []}})
    assert list(read_report(folder)["models"]) == ["a", "b", "c"]
    assert (folder.stand_in / REPORT_MD).is_file()
    assert read_report(folder.stand_in) == read_report(folder)  # a folder given as its Path
    (folder.stand_in / REPORT_JSON).write_bytes(b"\xff not json")
    assert read_report(folder) == {}


def test_serving_a_local_folder_verifies_it_and_runs_the_watchdog(model, folder, tmp_path):
    folder.publish([stage(model, folder.stand_in)], {})
    setup = folder.server_setup(tmp_path / "state", ModelControlMode())
    assert setup.watchdog and setup.environment == {} and setup.control == ModelControlMode()
    (folder.stand_in / "tiny_fp32" / "1" / "model.onnx").write_bytes(b"changed")
    with pytest.raises(TritonRepoError, match="was modified after it was published"):
        folder.server_setup(tmp_path / "state", ModelControlMode())


def test_a_folder_built_for_the_gpu_target_is_refused_by_the_local_server(model, folder, tmp_path):
    folder.publish([stage(model, folder.stand_in)], {})
    manifest = folder.manifest()
    manifest["models"]["tiny_fp32"]["target"] = "gpu"
    (folder.stand_in / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ServerError, match=r"was built for the gpu target \(tiny_fp32, ...\)"):
        folder.server_setup(tmp_path / "state", ModelControlMode())


class FakeStore:
    """What serving reads of a bucket before it needs credentials: the manifest."""

    def __init__(self, url, manifest: dict) -> None:
        self.url, self.manifest = url, manifest

    def read(self, key: str) -> bytes | None:
        return json.dumps(self.manifest).encode() if key == self.url.key("manifest.json") else None


def test_a_bucket_holding_gpu_target_models_is_refused_by_the_local_server(tmp_path, monkeypatch):
    import triton_repo.repo.repository as repository_module

    url = parse_repository("s3://models/prod")
    manifest = {"models": {"tiny_fp32_trt": {"target": "gpu"}, "tiny_fp32": {}}}
    checks = []

    def open_store(target):
        checks.append(target.url)
        return FakeStore(url, manifest)

    monkeypatch.setattr(repository_module, "open_store", open_store)
    store = open_repository(url, tmp_path / "work")
    with pytest.raises(ServerError, match=r"holds gpu-target models \(tiny_fp32_trt, ...\)"):
        store.server_setup(tmp_path / "state", ModelControlMode())
    store.check_access()
    assert checks == [url]  # access is checked once, on first use
