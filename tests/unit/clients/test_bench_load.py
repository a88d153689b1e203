"""The load generator's failure statuses: what each protocol's errors are counted as."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest
from tritonclient.utils import InferenceServerException

from triton_repo.clients.bench.load import status_of


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="x")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_asyncio_timeout_is_a_client_timeout(protocol):
    # asyncio.wait_for raises asyncio.TimeoutError, which is the builtin TimeoutError since Python 3.11.
    assert status_of(TimeoutError(), protocol) == "client timeout"


def test_grpc_error_is_counted_by_its_status_code_name():
    assert status_of(rpc_error(grpc.StatusCode.UNAVAILABLE), "grpc") == "UNAVAILABLE"
    assert status_of(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED), "grpc") == "RESOURCE_EXHAUSTED"


def test_grpc_deadline_exceeded_is_a_client_timeout():
    assert status_of(rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED), "grpc") == "client timeout"


def test_tritonclient_grpc_exception_is_counted_without_the_statuscode_prefix():
    error = InferenceServerException("unavailable", status="StatusCode.UNAVAILABLE")
    assert status_of(error, "grpc") == "UNAVAILABLE"


def test_http_error_is_counted_by_its_status_code():
    assert status_of(InferenceServerException("overloaded", status="503"), "http") == "HTTP 503"


def test_tritonclient_exception_without_a_status_is_a_client_error():
    assert status_of(InferenceServerException("decoding failed"), "http") == "client InferenceServerException"


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_any_other_exception_is_a_client_error_named_by_its_type(protocol):
    assert status_of(TypeError("bad"), protocol) == "client TypeError"
    assert status_of(ConnectionRefusedError(111, "refused"), protocol) == "client ConnectionRefusedError"
