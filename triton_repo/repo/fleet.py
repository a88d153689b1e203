"""Several tritonservers reading one repository: ask each to load, one server at a time.

A server in explicit model-control mode loads when asked, and keeps serving its loaded versions until
the new ones are READY (or keeps them if the load fails). A server in POLL mode refuses the request
("explicit model load / unload is not allowed if polling is enabled") and reloads by itself when the
repository's newest LastModified grows; for it we wait until its index shows the expected versions.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from triton_repo.core.errors import ServerError
from triton_repo.core.log import info
from triton_repo.serve.model_control import ModelControl

POLLING_REFUSAL = "polling is enabled"
POLL_WAIT_S = 120.0


def each_address(url: str) -> list[str]:
    """One URL per IPv4 address the server's host name resolves to, so a Kubernetes headless Service
    (one record per ready pod) names every pod; the URL itself for an address, a name with one address,
    or one that does not resolve (the load then says it cannot reach it)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        return [url]
    except ValueError:
        pass
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return [url]
    addresses = sorted({entry[4][0] for entry in found}, key=ipaddress.ip_address)
    if len(addresses) <= 1:
        return [url]
    tail = parts.path.rstrip("/")
    return [f"{parts.scheme}://{address}:{port}{tail}" for address in addresses]


@dataclass
class FleetLoad:
    """Which servers switched to the new versions, so a refusal further on can switch them back."""

    switched: list[ModelControl]


def load_everywhere(
    servers: list[ModelControl],
    names: list[str],
    expected: dict[str, list[int]],
    poll_wait: float = POLL_WAIT_S,
) -> FleetLoad:
    """Each server in turn loads every model in `names` (in order); a polling server is waited for.

    Raises ServerError at the first refusal: the servers before it (which switched) and the refusing
    one are listed in the error's `switched` attribute; the caller restores the pointers and has them
    load again.
    """
    done = FleetLoad([])
    for server in servers:
        try:
            polling = _load_all(server, names)
            if polling:
                _wait_for_versions(server, expected, poll_wait)
        except ServerError as error:
            # the refusing server reloads too: its failed version leaves it not ready (strict readiness)
            error.switched = [*done.switched, server]  # type: ignore[attr-defined]
            raise
        done.switched.append(server)
        info(f"  {server.http_url}: {'picked up' if polling else 'loaded'} {_describe(expected)}")
    return done


def reload_everywhere(servers: list[ModelControl], names: list[str]) -> list[str]:
    """Ask servers to load again (after the pointers were restored); returns the problems, if any."""
    problems = []
    for server in servers:
        try:
            _load_all(server, names)
        except ServerError as error:
            problems.append(str(error))
    return problems


def _load_all(server: ModelControl, names: list[str]) -> bool:
    """Load each model; True when the server polls instead (it refused the first load for that)."""
    for name in names:
        try:
            server.load(name)
        except ServerError as error:
            if POLLING_REFUSAL in str(error):
                return True
            raise
    return False


def _wait_for_versions(server: ModelControl, expected: dict[str, list[int]], timeout: float) -> None:
    """Until the polling server shows exactly the expected versions READY for every model."""
    deadline = time.monotonic() + timeout
    seen: dict[str, set[str]] | None = None
    while time.monotonic() < deadline:
        seen = server.ready_versions()
        if seen is not None and all(
            seen.get(name, set()) == {str(v) for v in versions} for name, versions in expected.items()
        ):
            return
        time.sleep(0.5)
    now = {name: sorted((seen or {}).get(name, set())) for name in expected}
    raise ServerError(
        f"tritonserver at {server.http_url} (model control POLL) did not pick up {_describe(expected)} "
        f"within {timeout:.0f} s (READY now: {now}); check its --repository-poll-secs and its log"
    )


def _describe(expected: dict[str, list[int]]) -> str:
    return ", ".join(f"{name} {'+'.join(map(str, versions))}" for name, versions in sorted(expected.items()))
