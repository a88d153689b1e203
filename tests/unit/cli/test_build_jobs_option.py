"""`triton-repo build -j N`: at least one, its environment variable named in --help."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from triton_repo.cli import cli


@pytest.mark.parametrize("jobs", ["0", "-2"])
def test_jobs_below_one_is_a_usage_error_before_any_work(jobs, tmp_path):
    result = CliRunner().invoke(cli, ["build", "-j", jobs, "--work-dir", str(tmp_path / "build")])
    assert result.exit_code == 2
    assert "Invalid value for '-j' / '--jobs'" in result.output
    assert f"{jobs} is not in the range x>=1" in result.output
    assert not (tmp_path / "build").exists()  # refused before the log or anything else was written


def test_jobs_comes_from_triton_repo_jobs_and_help_says_so():
    result = CliRunner().invoke(cli, ["build", "--help"], terminal_width=200)
    assert "-j, --jobs N" in result.output
    assert "TRITON_REPO_JOBS" in result.output
    refused = CliRunner().invoke(cli, ["build"], env={"TRITON_REPO_JOBS": "0"})
    assert refused.exit_code == 2 and "0 is not in the range x>=1" in refused.output
