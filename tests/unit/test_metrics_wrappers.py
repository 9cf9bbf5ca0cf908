"""The handler wrappers of server/metrics.py, driven without a network:
which status code a call that ends from outside is counted under."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from medsettle.server.app import ECHO_DESCRIPTOR
from medsettle.server.metrics import CallStats, MetricsEndpoint, measured, method_names


class Context:
    """What the wrappers read of a grpc.aio context."""

    def __init__(self, time_remaining_s: float | None) -> None:
        self._remaining_s = time_remaining_s

    def time_remaining(self) -> float | None:
        return self._remaining_s

    def code(self) -> None:
        return None


class Echo:
    def __init__(self) -> None:
        self.closed = False

    async def Echo(self, request, context):  # noqa: N802
        await asyncio.sleep(3600)

    async def EchoStream(self, request_iterator, context):  # noqa: N802
        try:
            while True:
                yield "answer"
        finally:
            self.closed = True


def _stats() -> CallStats:
    return CallStats(method_names(ECHO_DESCRIPTOR))


@pytest.mark.parametrize("remaining_s, code", [(None, "CANCELLED"), (5.0, "CANCELLED"), (0.0, "DEADLINE_EXCEEDED")])
def test_a_stream_closed_while_its_client_reads_slowly(remaining_s, code):
    """grpc.aio closes a server stream suspended at its yield (GeneratorExit):
    a hang-up, or a deadline passed; and the handler's own cleanup runs then."""
    stats, servicer = _stats(), Echo()
    stream = measured(servicer, ECHO_DESCRIPTOR, stats).EchoStream(iter(()), Context(remaining_s))

    async def read_one_then_close() -> None:
        assert await stream.__anext__() == "answer"
        await stream.aclose()

    asyncio.run(read_one_then_close())
    assert stats.codes["EchoStream"] == {code: 1} and stats.in_flight["EchoStream"] == 0
    assert stats.seconds["EchoStream"].count == 1
    assert servicer.closed


@pytest.mark.parametrize("remaining_s, code", [(None, "CANCELLED"), (-0.01, "DEADLINE_EXCEEDED")])
def test_a_unary_call_cancelled_by_grpc(remaining_s, code):
    stats = _stats()
    handler = measured(Echo(), ECHO_DESCRIPTOR, stats).Echo

    async def cancel_it() -> None:
        call = asyncio.ensure_future(handler(None, Context(remaining_s)))
        await asyncio.sleep(0)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    asyncio.run(cancel_it())
    assert stats.codes["Echo"] == {code: 1} and stats.in_flight["Echo"] == 0


def test_an_exception_the_handler_did_not_expect_is_unknown():
    class Broken(Echo):
        async def Echo(self, request, context):  # noqa: N802
            raise KeyError("bug")

    stats = _stats()
    with pytest.raises(KeyError):
        asyncio.run(measured(Broken(), ECHO_DESCRIPTOR, stats).Echo(None, Context(None)))
    assert stats.codes["Echo"] == {"UNKNOWN": 1}


def test_a_handler_that_is_not_async_is_refused_when_wrapped():
    class Plain(Echo):
        def Echo(self, request, context):  # noqa: N802
            return None

    with pytest.raises(TypeError, match="Echo: the handler must be an async function"):
        measured(Plain(), ECHO_DESCRIPTOR, _stats())


@pytest.mark.parametrize("host, url", [
    ("127.0.0.1", "http://127.0.0.1:9464/metrics"), ("0.0.0.0", "http://127.0.0.1:9464/metrics"),
    ("::", "http://[::1]:9464/metrics"), ("::1", "http://[::1]:9464/metrics"),
    ("metrics.example", "http://metrics.example:9464/metrics"),
])
def test_the_endpoint_url_reaches_it_from_this_machine(host, url):
    assert MetricsEndpoint(SimpleNamespace(), host, 9464).url == url
