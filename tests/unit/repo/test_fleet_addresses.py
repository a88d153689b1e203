"""Which servers a publish asks to load: a name with several addresses (a Kubernetes headless Service,
one record per ready pod) is each of its pods."""

from __future__ import annotations

import socket

from triton_repo.repo import fleet
from triton_repo.repo.fleet import each_address


def resolving(table: dict[str, list[str]]):
    def getaddrinfo(host, port, family=0, kind=0, *rest):
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in table[host]]

    return getaddrinfo


def test_a_headless_service_name_is_one_server_per_pod_address(monkeypatch):
    monkeypatch.setattr(
        fleet.socket,
        "getaddrinfo",
        resolving({"prod-pods.serving.svc": ["10.0.0.12", "10.0.0.9", "10.0.0.12"]}),
    )
    assert each_address("http://prod-pods.serving.svc:8000") == [
        "http://10.0.0.9:8000",
        "http://10.0.0.12:8000",
    ]


def test_an_address_a_single_record_name_or_an_unknown_name_stays_as_given(monkeypatch):
    monkeypatch.setattr(fleet.socket, "getaddrinfo", resolving({"prod.serving.svc": ["10.96.0.5"]}))
    assert each_address("http://prod.serving.svc:8000") == ["http://prod.serving.svc:8000"]
    assert each_address("http://10.0.0.9:8000") == ["http://10.0.0.9:8000"]
    assert each_address("http://nowhere.invalid:8000") == ["http://nowhere.invalid:8000"]


def test_localhost_is_one_server_not_one_per_address_family():
    assert each_address("http://localhost:8000") == ["http://localhost:8000"]
