"""The gateway's OpenAPI 3.1 description and its browsable page (served at
/fsi/api/openapi.json and /fsi/api/docs, no credential needed; the page is
self-contained: no script from elsewhere, so it works on a closed network).
The example requests are ones the shipped sample data settles."""

from __future__ import annotations

import html
import json
from typing import Any

from medsettle.server.gateway import envelope as env

ENDPOINT = "/fsi/api/rsfComIfsService/callService"

_HEADER = {"msgid": "H13010100001202610151030000001", "mdtrtarea_admvs": "130100", "insuplc_admdvs": "130100",
           "recer_sys_code": "MEDSETTLE", "infver": "V1.0", "opter_type": "1", "opter": "001", "opter_name": "counter 1",
           "inf_time": "2026-10-15 10:30:00", "fixmedins_code": "H13010100001", "fixmedins_name": "Hebei hospital",
           "sign_no": ""}
_HEBEI_BILL = {
    "data": {"psn_no": "13010000000000000001", "insutype": 310, "insuplc_admdvs": "130100",
             "visit_type": "VISIT_TYPE_OUTPATIENT", "acct_used_flag": "1"},
    "feedetail": [{"feedetl_sn": "1", "med_list_codg": "XB0202", "cnt": 1, "pric": 4.52}],
}

EXAMPLE_REQUESTS: dict[str, dict[str, Any]] = {
    env.PRE_SETTLE: {"infno": "2206", **_HEADER, "msgid": "H13010100001202610151030000000", "input": _HEBEI_BILL},
    env.SETTLE: {"infno": "2207", **_HEADER, "input": _HEBEI_BILL},
    env.REVERSE: {"infno": "2208", **_HEADER, "msgid": "H13010100001202610151030000002",
                  "input": {"data": {"setl_id": "S000000000001"}}},
    env.LOOKUP: {"infno": "5203", **_HEADER, "msgid": "H13010100001202610151030000003",
                 "input": {"data": {"msgid": "H13010100001202610151030000001"}}},
    env.RECONCILE_TOTALS: {"infno": "3201", **_HEADER, "msgid": "H13010100001202610151030000004",
                           "input": {"data": {"setlym": "2026-10", "clr_type": "11", "fixmedins_setl_cnt": 2,
                                              "medfee_sumamt": "0.00", "fund_pay_sumamt": "0.00",
                                              "acct_pay": "0.00", "psn_cash_pay": "0.00"}}},
    env.RECONCILE_DETAILS: {"infno": "3202", **_HEADER, "msgid": "H13010100001202610151030000005",
                            "input": {"data": {"setlym": "2026-10", "clr_type": 11, "page_num": 1, "page_size": 100}}},
}

_YUAN = {"oneOf": [{"type": "number", "multipleOf": 0.01}, {"type": "string", "pattern": r"^-?[0-9]{1,15}(\.[0-9]{1,2})?$"}],
         "description": "yuan with at most two decimals, a number or a string; converted to fen exactly"}
_SETLINFO = {"type": "object", "description": "the settlement's fields by the gRPC SettleResult names, amounts in yuan",
             "properties": {name: ({"type": "number"} if name in (
                 "medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt",
                 "act_pay_dedc", "hifp_pay", "fund_pay_sumamt", "psn_part_amt", "hosp_part_amt", "acct_pay",
                 "psn_cash_pay", "balc") else {"type": "string"})
                 for name in ("setl_id", "msgid", "fixmedins_code", "psn_no", "setl_time", "setlym", "orig_setl_id",
                              "medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt",
                              "inscp_scp_amt", "act_pay_dedc", "hifp_pay", "fund_pay_sumamt", "psn_part_amt",
                              "hosp_part_amt", "acct_pay", "psn_cash_pay", "balc")}}
_STATUSES = {
    "400": "FIELD_INVALID (envelope, JSON, UTF-8 or a field), the bill does not match the reference data, NO_POLICY, "
           "ALREADY_REVERSED, REVERSAL_OF_REVERSAL, RULE_REFUSED",
    "401": "UNAUTHENTICATED: no, an unknown or a revoked credential",
    "403": "NOT_YOUR_INSTITUTION: the credential does not act for fixmedins_code (or an operator writes)",
    "404": "SETTLEMENT_NOT_FOUND",
    "408": "the body did not arrive in full in time; send it again with the same msgid",
    "409": "IDEMPOTENCY_CONFLICT: this msgid was used for another payload",
    "413": "the body is larger than the server's bound",
    "429": "OVERLOADED: too many calls in progress or the writer's queue is full; retry with the same msgid",
    "503": "STORAGE_UNAVAILABLE: the ledger cannot be written now; retry with the same msgid",
}


def openapi_document() -> dict[str, Any]:
    answer = {"type": "object", "required": ["infcode", "inf_refmsgid", "respond_time", "err_msg", "output"],
              "properties": {
                  "infcode": {"type": "integer", "enum": [0, -1], "description": "0 done, -1 refused"},
                  "inf_refmsgid": {"type": "string", "description": "the msgid this answers"},
                  "refmsg_time": {"type": "string", "description": "yyyyMMddHHmmssSSS, China time"},
                  "respond_time": {"type": "string", "description": "yyyyMMddHHmmssSSS, China time"},
                  "err_msg": {"type": ["string", "null"],
                              "description": "REASON: field (envelope field): why; ... (the gRPC reason and field names)"},
                  "err_detail": {"type": "object", "description": "on a refusal: reason and field_violations "
                                 "[{field, envelope_field, description}]"},
                  "output": {"type": ["object", "null"], "properties": {
                      "setlinfo": _SETLINFO, "setldetail": {"type": "array", "items": {"type": "object"}},
                      "stmtinfo": {"type": "object"}, "data": {"type": "array", "items": _SETLINFO}}},
              }}
    request = {"type": "object", "required": ["infno", "msgid", "fixmedins_code", "input"], "properties": {
        "infno": {"type": "string", "enum": list(env.INTERFACES),
                  "description": "; ".join(f"{k} {v}" for k, v in env.INTERFACES.items())},
        "msgid": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,30}$",
                  "description": "the idempotency key with fixmedins_code: a retry sends the same"},
        "fixmedins_code": {"type": "string", "description": "the institution acting; the credential must be its own"},
        "input": {"type": "object", "properties": {
            "data": {"type": "object", "description": "the SettleRequest fields (2206/2207), or the interface's query"},
            "feedetail": {"type": "array", "items": {"type": "object", "properties": {
                "feedetl_sn": {"type": "string"}, "hilist_code": {"type": "string"},
                "med_list_codg": {"type": "string", "description": "synonym of hilist_code"},
                "cnt": {"type": "integer"}, "pric": _YUAN}}}}},
    }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "medsettle national-interface gateway", "version": "1",
                 "description": "The national medical-insurance platform's envelope over HTTP. One endpoint; "
                                "infno chooses the interface. Amounts in yuan."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": {"Envelope": request, "Answer": answer}},
        "security": [{"bearer": []}],
        "paths": {ENDPOINT: {"post": {
            "summary": "call an interface (infno)",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Envelope"},
                "examples": {infno: {"summary": f"{infno} {env.INTERFACES[infno]}", "value": body}
                             for infno, body in EXAMPLE_REQUESTS.items()}}}},
            "responses": {"200": {"description": "infcode 0, output", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Answer"}}}},
                **{code: {"description": f"infcode -1: {text}", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Answer"}}}} for code, text in _STATUSES.items()}},
        }}},
    }


def docs_page(document: dict[str, Any], openapi_path: str) -> str:
    """A readable page of the description: the interfaces, an example request of each, the statuses."""
    post = document["paths"][ENDPOINT]["post"]
    examples = post["requestBody"]["content"]["application/json"]["examples"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>medsettle gateway</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}pre{background:#f4f4f4;padding:1em;"
        "overflow:auto}</style></head><body>",
        f"<h1>{html.escape(document['info']['title'])}</h1><p>{html.escape(document['info']['description'])}</p>",
        f"<p><code>POST {ENDPOINT}</code> with <code>Authorization: Bearer &lt;token&gt;</code>. "
        f"Machine-readable: <a href='{html.escape(openapi_path)}'>OpenAPI 3.1</a>.</p><h2>Interfaces</h2>",
    ]
    for infno, example in examples.items():
        parts.append(f"<h3>{html.escape(example['summary'])}</h3><pre>"
                     f"{html.escape(json.dumps(example['value'], ensure_ascii=False, indent=2))}</pre>")
    parts.append("<h2>Answers</h2><ul>")
    for code, response in post["responses"].items():
        parts.append(f"<li><b>{code}</b> {html.escape(response['description'])}</li>")
    parts.append("</ul></body></html>")
    return "".join(parts)
