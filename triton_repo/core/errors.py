"""One base exception. User errors exit 2 with one line; failed checks exit 1; anything else is a bug."""

from __future__ import annotations

UNEXPECTED = 3  # the exit code of an unexpected failure (a bug, or a tool failing in a way not known here)


class TritonRepoError(Exception):
    """A problem the user can fix. The message is one line: what, where, and how to fix it."""

    exit_code = 2

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail  # optional extra lines (a log tail), printed after the one-line message


class SpecError(TritonRepoError):
    """A model spec (models/<name>/model.yaml) or its data is invalid."""


class ServerError(TritonRepoError):
    """The local tritonserver could not be started, stopped or reached."""


class CheckFailed(TritonRepoError):
    """A correctness or accuracy check failed: the artifact is wrong, not the command line."""

    exit_code = 1


class PreflightError(TritonRepoError):
    """A gpu-target model the pinned Triton release would refuse or serve wrongly (TensorRT version, profiles)."""
