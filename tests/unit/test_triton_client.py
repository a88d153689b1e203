"""The client's retry policy: only UNAVAILABLE is retried, bounded, with backoff and jitter."""

from __future__ import annotations

import pytest
from tritonclient.utils import InferenceServerException

from clients.triton_client import RetryPolicy, TritonClient, is_unavailable

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
