"""The client's retry policy: only UNAVAILABLE is retried, bounded, with backoff and jitter."""

from __future__ import annotations

import re

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from triton_repo.clients.triton_client import RetryPolicy, TritonClient, is_unavailable

FAST = RetryPolicy(attempts=3, first_delay_s=0.001, max_delay_s=0.002)


def failing(statuses: list[str | None]):
    """A call that raises the given statuses in turn (None: succeed), counting its calls."""
    calls = []

    def call():
        calls.append(1)
        status = statuses[len(calls) - 1]
        if status is None:
            return "answer"
        raise InferenceServerException(msg=f"server says {status}", status=status)

    return call, calls


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (InferenceServerException("x", status="StatusCode.UNAVAILABLE"), True),
        (InferenceServerException("x", status="503"), True),
        (ConnectionRefusedError(), True),
        (InferenceServerException("x", status="StatusCode.NOT_FOUND"), False),
        (InferenceServerException("x", status="StatusCode.INVALID_ARGUMENT"), False),
        (InferenceServerException("x", status="400"), False),
        (ValueError("x"), False),
    ],
)
def test_only_unavailable_and_refused_connections_are_retryable(error, retryable):
    assert is_unavailable(error) is retryable


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_unavailable_is_retried_until_it_succeeds(protocol):
    client = TritonClient(protocol, "127.0.0.1:1", retry=FAST)
    call, calls = failing(["StatusCode.UNAVAILABLE", "503", None])
    assert client._call(call) == "answer"
    assert len(calls) == 3 and client.retries == 2


def test_retries_are_bounded_and_the_last_error_is_raised():
    client = TritonClient("grpc", "127.0.0.1:1", retry=FAST)
    call, calls = failing(["StatusCode.UNAVAILABLE"] * 5)
    with pytest.raises(InferenceServerException, match="server says StatusCode.UNAVAILABLE"):
        client._call(call)
    assert len(calls) == FAST.attempts and client.retries == FAST.attempts - 1


@pytest.mark.parametrize("status", ["StatusCode.NOT_FOUND", "StatusCode.INVALID_ARGUMENT", "400"])
def test_other_errors_fail_at_once_with_the_servers_message(status):
    client = TritonClient("grpc", "127.0.0.1:1", retry=FAST)
    call, calls = failing([status, None])
    with pytest.raises(InferenceServerException, match=f"server says {status}"):
        client._call(call)
    assert len(calls) == 1 and client.retries == 0


def test_backoff_doubles_with_jitter_and_is_capped():
    policy = RetryPolicy(attempts=6, first_delay_s=0.1, max_delay_s=0.5)
    for retry, nominal in enumerate([0.1, 0.2, 0.4, 0.5, 0.5]):
        delays = [policy.delay(retry) for _ in range(200)]
        assert min(delays) >= 0.5 * nominal and max(delays) <= 1.5 * nominal
        assert max(delays) - min(delays) > 0.2 * nominal  # jittered, not a fixed sleep


def test_a_refused_request_keeps_the_servers_status_for_callers_that_count_errors():
    from triton_repo.clients.triton_client import RequestRefused, status_code

    error = RequestRefused("tiny_fp32 (grpc): INVALID_ARGUMENT: ...", "INVALID_ARGUMENT")
    assert status_code(error) == "INVALID_ARGUMENT" and not is_unavailable(error)


@pytest.mark.parametrize(
    ("model", "inputs", "expected"),
    [
        ("../tiny_fp32", {}, "model '../tiny_fp32': not a Triton model name"),
        ("a/b", {}, "model 'a/b': not a Triton model name"),
        ("", {}, "model '': not a Triton model name"),
        ("tiny_fp32", {"x": np.zeros(2, np.uint32)}, "tiny_fp32: input 'x' is numpy uint32"),
    ],
)
def test_what_the_wire_cannot_express_is_refused_before_sending(model, inputs, expected):
    from triton_repo.clients.triton_client import RequestRefused

    client = TritonClient("grpc", "127.0.0.1:1", retry=FAST)
    with pytest.raises(RequestRefused, match=re.escape(expected)):
        client.infer(model, inputs, ["y"])
    assert client.retries == 0


@pytest.mark.parametrize("status", ["StatusCode.DEADLINE_EXCEEDED", "StatusCode.INTERNAL", "500"])
def test_server_faults_reach_the_caller_as_they_are(status):
    """Only a wrong request becomes RequestRefused; timeouts and faults keep tritonclient's exception."""
    client = TritonClient("grpc", "127.0.0.1:1", retry=FAST)

    def fault(*_):
        raise InferenceServerException(msg="server fault", status=status)

    client._infer = fault
    with pytest.raises(InferenceServerException, match="server fault"):
        client.infer("tiny_fp32", {"x": np.zeros(2, np.float32)}, ["y"])
