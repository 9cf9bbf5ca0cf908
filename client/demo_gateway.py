"""The demo's one bill over the JSON gateway, posted with curl as an
integrator would, then read back over gRPC: the same settlement."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from decimal import Decimal
from pathlib import Path

from rich.console import Console

from medsettle.client.national import ENDPOINT, settle_envelope
from medsettle.client.settlement_client import SettlementClient
from medsettle.v1 import settlement_pb2 as pb

GATEWAY_BILL = pb.SettleRequest(
    msgid="DEMO-HTTP-GZ-0001", fixmedins_code="H44010100001", psn_no="44010000000000000002", insutype=390,  # type: ignore[arg-type]
    insuplc_admdvs="440100", visit_type=pb.VISIT_TYPE_OUTPATIENT, acct_used_flag=False,
    fee_lines=[pb.FeeLine(feedetl_sn="1", hilist_code="S0001", cnt=1, pric_fen=2500),
               pb.FeeLine(feedetl_sn="2", hilist_code="XB0202", cnt=2, pric_fen=452)],
)
CURL_TIMEOUT_S = 30


def run_gateway_demo(http_port: int, token: str, client: SettlementClient, console: Console) -> None:
    """Settles GATEWAY_BILL with curl (the token given on stdin, never on the command line)."""
    curl = shutil.which("curl")
    url = f"http://127.0.0.1:{http_port}{ENDPOINT}"
    console.print(f"[bold]Over the national-interface JSON gateway[/] ({url}):")
    if curl is None:
        console.print("  (curl is not installed: skipped)")
        return
    with tempfile.TemporaryDirectory(prefix="medsettle-demo-") as directory:
        body = Path(directory) / "bill.json"
        body.write_text(json.dumps(settle_envelope(GATEWAY_BILL), ensure_ascii=False, indent=1), "utf-8")
        console.print(f"  curl -sS -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' "
                      f"--data @bill.json {url}", soft_wrap=True)  # one line, to be copied whole
        done = subprocess.run([curl, "-sS", "--max-time", str(CURL_TIMEOUT_S), "-H", "@-", "-H", "Content-Type: application/json",
                               "--data-binary", f"@{body}", url],
                              input=f"Authorization: Bearer {token}\n", capture_output=True, text=True, check=False)
    if done.returncode != 0:
        console.print(f"  [red]curl failed[/] ({done.returncode}): {done.stderr.strip()}")
        return
    answer = json.loads(done.stdout, parse_float=Decimal)
    if answer["infcode"] != 0:
        console.print(f"  [red]refused[/]: {answer['err_msg']}")
        return
    info = answer["output"]["setlinfo"]
    console.print(f"  infcode 0, setl_id {info['setl_id']}: medfee_sumamt {info['medfee_sumamt']}, "
                  f"fund_pay_sumamt {info['fund_pay_sumamt']}, acct_pay {info['acct_pay']}, "
                  f"psn_cash_pay {info['psn_cash_pay']}, balc {info['balc']} (yuan)")
    over_grpc = client.get(GATEWAY_BILL.fixmedins_code, setl_id=info["setl_id"])
    same = over_grpc.msgid == GATEWAY_BILL.msgid and over_grpc.medfee_sumamt_fen == int(info["medfee_sumamt"] * 100)
    console.print(f"  read over gRPC: {over_grpc.setl_id}, {over_grpc.medfee_sumamt_fen} fen: the same settlement: {same}")
