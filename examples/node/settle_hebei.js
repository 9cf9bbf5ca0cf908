// A medsettle client in Node.js (@grpc/grpc-js with @grpc/proto-loader).
//
// It settles the Hebei worked example, retries it with the same msgid (and
// gets the same setl_id back), sends a malformed bill and decodes the rich
// error details of the refusal (google.rpc.Status in the
// grpc-status-details-bin trailer: ErrorInfo, BadRequest, RetryInfo), then
// reverses the settlement.
//
//   MEDSETTLE_TARGET=127.0.0.1:50051 MEDSETTLE_TOKEN=... node settle_hebei.js
//
// The token must be a credential of the Hebei General Hospital
// (H13010100001): medsettle credentials issue --code H13010100001 --label node
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");

const TARGET = process.env.MEDSETTLE_TARGET || "127.0.0.1:50051";
const TOKEN = process.env.MEDSETTLE_TOKEN || "";
const INSTITUTION = "H13010100001";
const DEADLINE_MS = 5000; // per attempt: a settlement answers in milliseconds; give up well before the counter does
const RETRIES = 3;

// The medsettle protos come from this repository; google/rpc from googleapis
// (vendored in ./protos); google/protobuf's well-known types ship with protobufjs.
const PROTO_DIRS = [path.join(__dirname, "..", "..", "protos"), path.join(__dirname, "protos")];
const LOAD_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: PROTO_DIRS };

const medsettle = grpc.loadPackageDefinition(
  protoLoader.loadSync(["medsettle/v1/settlement.proto"], LOAD_OPTIONS),
).medsettle.v1;

// The error-detail messages, decoded with protobufjs (proto-loader's own
// dependency) straight from the vendored googleapis files.
const googleRpc = new protobuf.Root();
googleRpc.resolvePath = (origin, target) => {
  for (const dir of PROTO_DIRS) {
    const candidate = path.join(dir, target);
    if (fs.existsSync(candidate)) return candidate;
  }
  return protobuf.util.path.resolve(origin, target); // google/protobuf/*: bundled with protobufjs
};
googleRpc.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"], { keepCase: true });
const Status = googleRpc.lookupType("google.rpc.Status");
const DETAIL_TYPES = {
  "type.googleapis.com/google.rpc.ErrorInfo": googleRpc.lookupType("google.rpc.ErrorInfo"),
  "type.googleapis.com/google.rpc.BadRequest": googleRpc.lookupType("google.rpc.BadRequest"),
  "type.googleapis.com/google.rpc.RetryInfo": googleRpc.lookupType("google.rpc.RetryInfo"),
};

// gRPC codes worth a retry with the same request (same msgid): the server was
// busy or unreachable, or the deadline passed before the answer arrived. The
// msgid makes the retry safe: a settlement that did commit is returned, never
// made twice.
const RETRYABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.RESOURCE_EXHAUSTED]);

const client = new medsettle.SettlementService(TARGET, grpc.credentials.createInsecure());

function authMetadata() {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${TOKEN}`);
  return metadata;
}

function callOnce(method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, authMetadata(), { deadline: Date.now() + DEADLINE_MS }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

async function call(method, request) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await callOnce(method, request);
    } catch (error) {
      if (!RETRYABLE.has(error.code) || attempt >= RETRIES) throw error;
      await new Promise((wake) => setTimeout(wake, 200 * 2 ** attempt)); // 0.2, 0.4, 0.8 s
    }
  }
}

// google.rpc.Status from the grpc-status-details-bin trailer: the reason
// (ErrorInfo), each field at fault (BadRequest), a retry delay (RetryInfo).
function richDetails(error) {
  const details = { reason: "", domain: "", metadata: {}, violations: [], retryDelayMs: null };
  const [raw] = error.metadata ? error.metadata.get("grpc-status-details-bin") : [];
  if (!raw) return details;
  for (const any of Status.decode(raw).details) {
    const type = DETAIL_TYPES[any.type_url];
    if (!type) continue; // a detail this client does not know: skip it
    const detail = type.decode(any.value);
    if (any.type_url.endsWith("ErrorInfo")) {
      Object.assign(details, { reason: detail.reason, domain: detail.domain, metadata: detail.metadata });
    } else if (any.type_url.endsWith("BadRequest")) {
      details.violations = detail.field_violations.map((v) => ({ field: v.field, description: v.description }));
    } else {
      details.retryDelayMs = Number(detail.retry_delay.seconds) * 1000 + detail.retry_delay.nanos / 1e6;
    }
  }
  return details;
}

function hebeiBill(msgid) {
  return {
    msgid,
    fixmedins_code: INSTITUTION,
    psn_no: "13010000000000000001",
    insutype: "INSUTYPE_EMPLOYEE_BASIC",
    insuplc_admdvs: "130100",
    visit_type: "VISIT_TYPE_OUTPATIENT",
    acct_used_flag: true,
    fee_lines: [{ feedetl_sn: "1", hilist_code: "XB0202", cnt: 1, pric_fen: 452 }], // class B drug, 4.52 yuan
  };
}

// institution code + yyyymmddHHMMSS (China time) + sequence: 30 characters, as hospitals build them.
function newMsgid(sequence) {
  const chinaTime = new Date(Date.now() + 8 * 3600 * 1000); // UTC+8, no daylight saving
  const stamp = chinaTime.toISOString().replace(/\D/g, "").slice(0, 14);
  return `${INSTITUTION}${stamp}${String(sequence).padStart(4, "0")}`;
}

function amounts(result) {
  const names = ["medfee_sumamt_fen", "preselfpay_amt_fen", "inscp_scp_amt_fen", "fund_pay_sumamt_fen", "acct_pay_fen", "balc_fen"];
  return names.map((name) => `${name} ${result[name]}`).join(", ");
}

async function main() {
  const msgid = process.env.MEDSETTLE_MSGID || newMsgid(1);

  const settled = (await call("Settle", hebeiBill(msgid))).result;
  console.log(`settled ${settled.setl_id} (msgid ${msgid}): ${amounts(settled)}`);

  // A hospital that timed out resends the same message: same msgid, same answer.
  const retried = (await call("Settle", hebeiBill(msgid))).result;
  if (retried.setl_id !== settled.setl_id) throw new Error(`retry settled again: ${retried.setl_id}`);
  console.log(`retried with the same msgid: same setl_id ${retried.setl_id}`);

  // A malformed bill: a 2-digit insurance place and a quantity of 0.
  const bad = hebeiBill(`${msgid.slice(0, 29)}B`);
  bad.insuplc_admdvs = "13";
  bad.fee_lines[0].cnt = 0;
  try {
    await call("Settle", bad);
    throw new Error("the malformed bill was settled");
  } catch (error) {
    if (error.code === undefined) throw error;
    const details = richDetails(error);
    console.log(`refused ${grpc.status[error.code]} ${details.reason} (domain ${details.domain}, retry: ${RETRYABLE.has(error.code)})`);
    for (const violation of details.violations) console.log(`  ${violation.field}: ${violation.description}`);
  }

  // The reversal has a msgid of its own: retrying it is safe too.
  const reversal = (await call("Reverse", { msgid: `${msgid.slice(0, 29)}R`, fixmedins_code: INSTITUTION, setl_id: settled.setl_id })).result;
  console.log(`reversed ${settled.setl_id} by ${reversal.setl_id} (${reversal.kind}): ${amounts(reversal)}`);
}

main()
  .catch((error) => {
    const details = error.code !== undefined ? richDetails(error) : null;
    console.error(`failed: ${error.message}${details && details.reason ? ` [${details.reason}]` : ""}`);
    process.exitCode = 1;
  })
  .finally(() => client.close());
