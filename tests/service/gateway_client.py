"""A real HTTP client (aiohttp) for the gateway's service tests."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiohttp

from medsettle.server.gateway.yuan import dumps, loads

ENDPOINT = "/fsi/api/rsfComIfsService/callService"
_sequence = iter(range(1, 10**9))


def envelope(infno: str, code: str, input_: dict[str, Any], msgid: str | None = None) -> dict[str, Any]:
    return {"infno": infno, "msgid": msgid or f"G{next(_sequence):012d}", "fixmedins_code": code,
            "mdtrtarea_admvs": "", "insuplc_admdvs": "", "recer_sys_code": "TEST", "infver": "V1.0",
            "opter_type": "1", "opter": "1", "opter_name": "tests", "inf_time": "2026-10-15 10:30:00",
            "fixmedins_name": "", "sign_no": "", "input": input_}


def bill_input(psn_no: str = "44010000000000000001", insuplc: str = "440100", insutype: int = 310,
               lines: list[tuple[str, int, str]] | None = None, acct: bool = True, visit: object = 1) -> dict[str, Any]:
    lines = lines or [("S0001", 1, "25.00"), ("XB0201", 1, "35.00"), ("XC0401", 1, "12.00")]
    return {"data": {"psn_no": psn_no, "insutype": insutype, "insuplc_admdvs": insuplc, "visit_type": visit,
                     "acct_used_flag": acct},
            "feedetail": [{"feedetl_sn": str(i + 1), "hilist_code": c, "cnt": n, "pric": p}
                          for i, (c, n, p) in enumerate(lines)]}


class GatewayClient:
    """Posts envelopes to a running gateway; each institution's own token by default."""

    def __init__(self, port: int, tokens: Any, scheme: str = "http", ssl_context: ssl.SSLContext | None = None) -> None:
        self.url = f"{scheme}://127.0.0.1:{port}{ENDPOINT}"
        self.base = f"{scheme}://127.0.0.1:{port}"
        self.tokens = tokens
        self.ssl_context = ssl_context

    def post(self, body: Any = None, token: str | None = "own", raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        """(HTTP status, the answer read with every number as a Decimal)."""
        status, text = asyncio.run(self._post(body, token, raw, headers))
        return status, loads(text)

    def post_text(self, body: Any = None, token: str | None = "own", raw: bytes | None = None,
                  headers: dict[str, str] | None = None) -> tuple[int, str]:
        return asyncio.run(self._post(body, token, raw, headers))

    async def _post(self, body: Any, token: str | None, raw: bytes | None, headers: dict[str, str] | None) -> tuple[int, str]:
        if token == "own":
            token = self.tokens.get(body["fixmedins_code"]) if isinstance(body, dict) else None
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else dumps(body).encode()
        async with aiohttp.ClientSession() as session:
            async with session.post(self.url, data=data, headers={"Content-Type": "application/json", **sent},
                                    ssl=self.ssl_context if self.ssl_context is not None else False) as answer:
                return answer.status, await answer.text()

    def get(self, path: str) -> tuple[int, str]:
        async def fetch() -> tuple[int, str]:
            async with aiohttp.ClientSession() as session:
                async with session.get(self.base + path, ssl=self.ssl_context if self.ssl_context else False) as answer:
                    return answer.status, await answer.text()
        return asyncio.run(fetch())
