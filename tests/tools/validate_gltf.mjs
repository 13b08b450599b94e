#!/usr/bin/env node
// Validate a glTF 2.0 asset (.glb or .gltf) with the Khronos glTF-Validator.
//
//   node tests/tools/validate_gltf.mjs MODEL.glb    (or "-" to read the asset from stdin)
//
// Prints one JSON object: {numErrors, numWarnings, numInfos, numHints, truncated, messages,
// info, validatorVersion}. `messages` holds at most MAX_MESSAGES entries; the counts are exact.
// Exit code: 0 when there are no errors, 1 when there are errors or the asset could not be
// read as glTF at all, 2 on a usage error or an unreadable file.
import { readFileSync } from "node:fs";
import validator from "gltf-validator";

const MAX_MESSAGES = 50;
const SEVERITY = ["error", "warning", "info", "hint"];

function fail(message) {
  process.stderr.write(`validate_gltf: ${message}\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
if (args.length !== 1) {
  fail("usage: validate_gltf.mjs MODEL.glb (or - for stdin)");
}
const source = args[0];

let bytes;
try {
  bytes = new Uint8Array(readFileSync(source === "-" ? 0 : source));
} catch (err) {
  fail(`cannot read ${source}: ${err.message}`);
}

let summary;
try {
  const report = await validator.validateBytes(bytes, {
    uri: source,
    maxIssues: 0, // count every issue; the printed list is cut below
    writeTimestamp: false,
  });
  const issues = report.issues;
  summary = {
    numErrors: issues.numErrors,
    numWarnings: issues.numWarnings,
    numInfos: issues.numInfos,
    numHints: issues.numHints,
    truncated: issues.messages.length > MAX_MESSAGES,
    messages: issues.messages.slice(0, MAX_MESSAGES).map((m) => ({
      ...m,
      severity: SEVERITY[m.severity] ?? m.severity,
    })),
    info: report.info ?? null,
    validatorVersion: report.validatorVersion,
  };
} catch (err) {
  // The validator rejects input it cannot even recognise as glTF or GLB.
  summary = {
    numErrors: 1,
    numWarnings: 0,
    numInfos: 0,
    numHints: 0,
    truncated: false,
    messages: [{ code: "UNRECOGNISED_ASSET", message: String(err), severity: "error" }],
    info: null,
    validatorVersion: validator.version(),
  };
}

process.stdout.write(JSON.stringify(summary, null, 2) + "\n");
process.exit(summary.numErrors === 0 ? 0 : 1);
