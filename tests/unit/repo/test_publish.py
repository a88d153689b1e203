"""Versioned publishing and rollback on disk (the server side is tested in tests/integration/test_publish.py)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.integration.conftest import tree_hash
from tests.unit.conftest import write_spec
from tests.unit.repo.test_writer import SPEC, X, stage, stage_from_golden, tiny_onnx
from triton_repo.core.errors import TritonRepoError
from triton_repo.core.golden import GoldenCase, load_golden, save_golden
from triton_repo.core.locks import repository_lock
from triton_repo.core.spec import load_spec
from triton_repo.repo import publish as publish_module
from triton_repo.repo.config import parse_config
from triton_repo.repo.publish import (
    publish,
    read_manifest,
    rollback,
    verify_published,
)
from triton_repo.repo.writer import staging_root


def make_model(tmp_path, **triton):
    loaded = load_spec(write_spec(tmp_path / "models", {**SPEC, "triton": triton} if triton else SPEC))
    onnx_path, golden_path = tmp_path / "model.onnx", tmp_path / "golden.npz"
    tiny_onnx(onnx_path)
    save_golden([GoldenCase("sample", {"x": X}, {"y": X * 2 + 1})], golden_path)
    return loaded, onnx_path, golden_path


@pytest.fixture
def model(tmp_path):
    return make_model(tmp_path)


@pytest.fixture
def repository(tmp_path):
    return tmp_path / "repo"


def changed(model, rows: int):
    """The same model with a different golden sample: a new version's worth of change."""
    loaded, onnx_path, golden_path = model
    save_golden([GoldenCase("sample", {"x": X[:rows]}, {"y": X[:rows] * 2 + 1})], golden_path)
    return model


def versions_on_disk(repository, name="tiny_fp32"):
    return sorted(int(p.name) for p in (repository / name).iterdir() if p.name.isdigit())


def test_config_serves_the_latest_keep_versions(model, repository):
    config = parse_config(stage(model, repository).path / "config.pbtxt")
    assert config.version_policy.latest.num_versions == 2


def test_first_publish_is_version_1(model, repository):
    published = publish([stage(model, repository)], repository, {})
    assert published.versions == {"tiny_fp32": 1} and published.kept == {"tiny_fp32": [1]}
    entry = read_manifest(repository)["models"]["tiny_fp32"]
    assert (entry["version"], entry["versions"], entry["last_version"]) == (1, [1], 1)
    assert entry["golden"] == "1/golden.npz" and set(entry["published"]) == {"1"}
    assert read_manifest(repository)["format"] == 2


def test_publishing_the_same_model_again_changes_nothing(model, repository):
    publish([stage(model, repository)], repository, {"a": "1"})
    before = tree_hash(repository)
    published = publish([stage(model, repository)], repository, {"a": "1"})
    assert published.versions == {} and published.retired == []
    assert tree_hash(repository) == before


def test_a_changed_model_becomes_the_next_version_and_keeps_the_previous_one(model, repository):
    publish([stage(model, repository)], repository, {})
    first = (repository / "tiny_fp32" / "1" / "model.onnx").stat().st_ino
    published = publish([stage(changed(model, 1), repository)], repository, {})
    assert published.versions == {"tiny_fp32": 2} and published.kept == {"tiny_fp32": [1, 2]}
    assert versions_on_disk(repository) == [1, 2]
    assert (repository / "tiny_fp32" / "1" / "model.onnx").stat().st_ino == first  # linked, not copied
    assert load_golden(repository / "tiny_fp32" / "2" / "golden.npz")[0].inputs["x"].shape == (1, 4)
    assert load_golden(repository / "tiny_fp32" / "1" / "golden.npz")[0].inputs["x"].shape == (2, 4)
    entry = read_manifest(repository)["models"]["tiny_fp32"]
    assert (entry["version"], entry["versions"], entry["golden"]) == (2, [1, 2], "2/golden.npz")
    assert verify_published(repository) == len(entry["files"]) == 12  # 5 files per version + config + warmup
    assert list(staging_root(repository).iterdir()) == []


def test_only_the_latest_keep_versions_stay(model, repository):
    for rows in (2, 1, 2):
        publish([stage(changed(model, rows), repository)], repository, {})
    assert versions_on_disk(repository) == [2, 3]
    assert read_manifest(repository)["models"]["tiny_fp32"]["versions"] == [2, 3]


def test_keep_versions_1_keeps_only_the_newest(tmp_path, repository):
    model = make_model(tmp_path, keep_versions=1)
    publish([stage(model, repository)], repository, {})
    publish([stage(changed(model, 1), repository)], repository, {})
    assert versions_on_disk(repository) == [2]
    with pytest.raises(TritonRepoError, match="only version 2 is in .* nothing to roll back to"):
        rollback(["tiny_fp32"], repository, staging_root(repository), None)


def test_a_config_change_starts_a_new_history_without_the_old_versions(tmp_path, repository):
    publish([stage(make_model(tmp_path), repository)], repository, {})
    wider = make_model(tmp_path / "v2", instance_count=2)
    published = publish([stage(wider, repository)], repository, {})
    assert published.versions == {"tiny_fp32": 2} and versions_on_disk(repository) == [2]
    assert parse_config(repository / "tiny_fp32" / "config.pbtxt").instance_group[0].count == 2


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "fallback_rename"])
def test_a_config_change_swaps_the_model_directory_in_one_step(
    tmp_path, model, repository, monkeypatch, exchange
):
    publish([stage(model, repository)], repository, {})
    calls, real = [], publish_module._exchange

    def spy(a, b):  # with exchange=False, pretend the kernel lacks renameat2
        calls.append(exchange and real(a, b))
        return calls[-1]

    monkeypatch.setattr(publish_module, "_exchange", spy)
    publish([stage(make_model(tmp_path / "v2", instance_count=2), repository)], repository, {})
    assert calls == [exchange]  # the path under test was taken
    assert versions_on_disk(repository) == [2] and verify_published(repository) == 7
    assert sorted(p.name for p in repository.iterdir()) == ["manifest.json", "tiny_fp32"]


def test_a_new_version_is_added_beside_the_served_ones_without_touching_them(model, repository, monkeypatch):
    """Triton reloads a version whose files' mtime or ctime moved since it loaded it (and a stateful
    model's live sequences go with it): publishing version 3 leaves version 2 and the config as they were,
    inode for inode, and moves version 1 (past keep_versions 2) out."""
    publish([stage(model, repository)], repository, {})
    publish([stage(changed(model, 1), repository)], repository, {})
    folder = repository / "tiny_fp32"
    before = {p.relative_to(folder): os.stat(p) for p in folder.rglob("*") if not p.name.isdigit()}
    before = {k: (v.st_ino, v.st_mtime_ns, v.st_ctime_ns) for k, v in before.items() if k.parts[0] != "1"}
    monkeypatch.setattr(publish_module, "_exchange", lambda a, b: pytest.fail("swapped the directory"))
    publish([stage(changed(model, 2), repository)], repository, {})
    assert versions_on_disk(repository) == [2, 3] and verify_published(repository) == 12
    after = {p.relative_to(folder): os.stat(p) for p in folder.rglob("*") if p.relative_to(folder) in before}
    assert {k: (v.st_ino, v.st_mtime_ns, v.st_ctime_ns) for k, v in after.items()} == before


def test_publish_refuses_to_keep_a_version_modified_after_publishing(model, repository):
    publish([stage(model, repository)], repository, {})
    (repository / "tiny_fp32" / "1" / "model.py").write_text("# edited\n")
    before = tree_hash(repository)
    with pytest.raises(TritonRepoError, match=r"1/model\.py was modified after it was published"):
        publish([stage(changed(model, 1), repository)], repository, {})
    assert tree_hash(repository) == before


def test_rollback_serves_the_previous_version_and_never_reuses_a_number(model, repository):
    publish([stage(model, repository)], repository, {})
    publish([stage(changed(model, 1), repository)], repository, {})
    assert rollback(["tiny_fp32"], repository, staging_root(repository), None) == {"tiny_fp32": (2, 1)}
    assert versions_on_disk(repository) == [1]
    entry = read_manifest(repository)["models"]["tiny_fp32"]
    assert (entry["version"], entry["versions"], entry["golden"]) == (1, [1], "1/golden.npz")
    assert set(entry["published"]) == {"1"} and entry["last_version"] == 2
    assert verify_published(repository) == 7
    # The same change published again is a new version: 3, not 2.
    assert publish([stage(changed(model, 1), repository)], repository, {}).versions == {"tiny_fp32": 3}
    assert versions_on_disk(repository) == [1, 3]


def test_rollback_of_an_unknown_model_names_the_published_ones(model, repository):
    publish([stage(model, repository)], repository, {})
    with pytest.raises(TritonRepoError, match="nope: not in .*manifest.json; published models: tiny_fp32"):
        rollback(["nope"], repository, staging_root(repository), None)


def test_rollback_is_all_or_nothing(model, repository):
    publish([stage(model, repository), stage_from_golden(*model, repository, "fp16")], repository, {})
    publish([stage(changed(model, 1), repository)], repository, {})
    before = tree_hash(repository)
    with pytest.raises(TritonRepoError, match="tiny_fp16: only version 1"):
        rollback(["tiny_fp32", "tiny_fp16"], repository, staging_root(repository), None)
    assert tree_hash(repository) == before


def test_a_manifest_from_before_versions_is_continued_at_version_2(model, repository):
    publish([stage(model, repository)], repository, {})
    manifest = read_manifest(repository)
    for key in ("versions", "last_version", "published"):
        manifest["models"]["tiny_fp32"].pop(key)
    (repository / "manifest.json").write_text(json.dumps({**manifest, "format": 1}))
    assert publish([stage(changed(model, 1), repository)], repository, {}).versions == {"tiny_fp32": 2}
    assert versions_on_disk(repository) == [1, 2]


def test_a_second_publisher_is_refused_while_one_holds_the_lock(repository):
    refused = pytest.raises(TritonRepoError, match="another triton-repo build or rollback is publishing")
    with repository_lock(repository), refused, repository_lock(repository):
        pass
    with repository_lock(repository):  # released
        pass


def test_changing_a_staged_file_before_publishing_is_refused(model, repository):
    staged = stage(model, repository)
    (staged.path / "1" / "golden.npz").write_bytes(b"changed")
    with pytest.raises(TritonRepoError, match="staged files changed between staging and publishing"):
        publish([staged], repository, {})
    assert not (repository / "tiny_fp32").exists()


def test_golden_rows_are_unchanged_by_renumbering(model, repository):
    publish([stage(model, repository)], repository, {})
    publish([stage(changed(model, 1), repository)], repository, {})
    np.testing.assert_array_equal(
        load_golden(repository / "tiny_fp32" / "2" / "golden.npz")[0].outputs["y"], X[:1] * 2 + 1
    )


def test_a_config_change_keeps_the_replaced_directory_and_rollback_restores_it(tmp_path, repository):
    from triton_repo.repo.publish import history_root

    first = make_model(tmp_path)
    publish([stage(first, repository)], repository, {})
    publish([stage(changed(first, 1), repository)], repository, {})  # v1, v2 under the first config
    before = {
        p.relative_to(repository): p.read_bytes()
        for p in (repository / "tiny_fp32").rglob("*")
        if p.is_file()
    }
    wider = make_model(tmp_path / "v3", instance_count=2)
    publish([stage(wider, repository)], repository, {})
    entry = read_manifest(repository)["models"]["tiny_fp32"]
    assert entry["versions"] == [3] and entry["previous"]["versions"] == [1, 2]
    saved = history_root(repository) / "tiny_fp32"
    assert sorted(int(p.name) for p in saved.iterdir() if p.name.isdigit()) == [1, 2]
    publish([stage(changed(wider, 1), repository)], repository, {})  # same config: v4, history kept
    assert read_manifest(repository)["models"]["tiny_fp32"]["previous"]["versions"] == [1, 2]
    assert rollback(["tiny_fp32"], repository, staging_root(repository), None) == {"tiny_fp32": (4, 3)}
    assert rollback(["tiny_fp32"], repository, staging_root(repository), None) == {"tiny_fp32": (3, 2)}
    after = {
        p.relative_to(repository): p.read_bytes()
        for p in (repository / "tiny_fp32").rglob("*")
        if p.is_file()
    }
    assert after == before  # the old config and both its versions, byte for byte
    entry = read_manifest(repository)["models"]["tiny_fp32"]
    assert entry["versions"] == [1, 2] and entry["last_version"] == 4 and "previous" not in entry
    assert not saved.exists() and verify_published(repository) == len(after)
    assert rollback(["tiny_fp32"], repository, staging_root(repository), None) == {"tiny_fp32": (2, 1)}
    with pytest.raises(TritonRepoError, match="only version 1 is in .* no earlier state is kept"):
        rollback(["tiny_fp32"], repository, staging_root(repository), None)
    assert publish([stage(wider, repository)], repository, {}).versions == {"tiny_fp32": 5}


def test_a_tampered_history_is_refused_before_anything_moves(tmp_path, repository):
    from triton_repo.repo.publish import history_root

    publish([stage(make_model(tmp_path), repository)], repository, {})
    publish([stage(make_model(tmp_path / "v2", instance_count=2), repository)], repository, {})
    (history_root(repository) / "tiny_fp32" / "1" / "model.py").write_text("# edited\n")
    before = tree_hash(repository)
    with pytest.raises(TritonRepoError, match=r"1/model\.py was modified after it was published"):
        rollback(["tiny_fp32"], repository, staging_root(repository), None)
    assert tree_hash(repository) == before
