"""The benchmark baseline: the settlement messages over gRPC, no work done."""

from __future__ import annotations

from typing import AsyncIterator

import grpc

from medsettle.v1 import echo_pb2 as echo_pb
from medsettle.v1 import echo_pb2_grpc as echo_grpc
from medsettle.v1 import settlement_pb2 as pb


class EchoServicer(echo_grpc.EchoServiceServicer):
    def __init__(self, canned: pb.SettleResult) -> None:
        self._canned = canned

    async def Echo(self, request: echo_pb.EchoRequest, context: grpc.aio.ServicerContext) -> echo_pb.EchoResponse:
        return echo_pb.EchoResponse(result=self._canned)

    async def EchoStream(
        self, request_iterator: AsyncIterator[echo_pb.EchoStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[echo_pb.EchoStreamResponse]:
        async for _ in request_iterator:
            yield echo_pb.EchoStreamResponse(result=self._canned)
