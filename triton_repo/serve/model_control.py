"""Triton's model control API on a running server: load, unload, the repository index.

Shared by publishing (one server, or a fleet reading one object store), rollback and the stub watchdog.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

from triton_repo.core.errors import ServerError
from triton_repo.core.storage import ObjectStoreUrl, repository_id
from triton_repo.serve.server import running_state


class ModelControl:
    """Triton's model control API on a running server (explicit mode): load or unload one model.

    A load of a model that is already loaded is a reload: Triton keeps serving the loaded versions
    until the new ones are READY, and keeps them if the reload fails. Both calls return when done.
    """

    def __init__(self, http_url: str, timeout: float = 600.0, headers: dict[str, str] | None = None) -> None:
        self.http_url = http_url
        self.timeout = timeout
        # e.g. the header a server started with --http-restricted-api=model-repository:KEY=VALUE expects
        self.headers = dict(headers or {})

    def load(self, name: str, config: str | None = None, files: dict[str, bytes] | None = None) -> None:
        """Load (or reload) `name`. With `config` (the model config as JSON) and `files` (path in the
        model directory -> content), Triton builds the model from them in a directory of its own
        instead of the repository's: how a candidate configuration is tried without touching it."""
        parameters: dict[str, str] = {}
        if config is not None:
            parameters["config"] = config
        for path, content in (files or {}).items():
            parameters[f"file:{path}"] = base64.b64encode(content).decode()
        body = json.dumps({"parameters": parameters}).encode() if parameters else b"{}"
        self._post(f"models/{name}/load", name, "load", body)

    def unload(self, name: str) -> None:
        self._post(f"models/{name}/unload", name, "unload")

    def ready_versions(self) -> dict[str, set[str]] | None:
        """Model -> its READY versions, from the repository index; None if the server did not answer."""
        try:
            index = json.loads(self._post("index", "the repository", "read the index of"))
        except (ServerError, ValueError):
            return None
        ready: dict[str, set[str]] = {}
        for entry in index:
            if entry.get("state") == "READY":
                ready.setdefault(entry["name"], set()).add(str(entry.get("version", "")))
        return ready

    def _post(self, path: str, name: str, action: str, body: bytes = b"{}") -> bytes:
        request = urllib.request.Request(
            f"{self.http_url}/v2/repository/{path}",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", **self.headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            reason = server_message(error.read())
            raise ServerError(
                f"tritonserver at {self.http_url} could not {action} '{name}': {reason}"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ServerError(
                f"tritonserver at {self.http_url} did not answer the {action} of '{name}': {reason}"
            ) from None


def server_message(body: bytes) -> str:
    """The `error` of a Triton HTTP error body, on one line (a python backend traceback is cut at 'At:')."""
    try:
        text = json.loads(body).get("error", "")
    except (ValueError, AttributeError):
        text = body.decode(errors="replace")
    lines = []
    for line in text.splitlines():
        if line.strip() == "At:":
            break
        if line.strip():
            lines.append(line.strip())
    return " ".join(lines) or "(no reason given)"


def model_control(state_dir: Path, repository: Path | ObjectStoreUrl) -> ModelControl | None:
    """The model control API of the server `triton-repo serve` runs on this repository, if any."""
    state = running_state(state_dir)
    if state is None or state.repository != repository_id(repository):
        return None
    return ModelControl(state.http_url)
