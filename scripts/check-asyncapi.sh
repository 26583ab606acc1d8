#!/usr/bin/env bash
# Validate bp-relay's consumer contract (docs/asyncapi.yaml + docs/schemas/*.schema.json).
#
#   scripts/check-asyncapi.sh
#
# 1. docs/asyncapi.yaml is parsed and validated by the real AsyncAPI parser (@asyncapi/parser, the
#    library behind `asyncapi validate`, with its core + recommended rulesets). Any diagnostic of
#    severity error or warning fails the check; info and hints are printed only.
# 2. The payload JSON Schemas (draft-07, as AsyncAPI 3.0 schemas are) are compiled by Ajv in strict
#    mode, and every sample delivery (docs/examples/*.json; override the directory with
#    BP_RELAY_SAMPLES_DIR) must validate: action*.json against the action schema, bp*.json against
#    the business process schema.
# 3. Self-tests that prove the checks can fail: a temp copy of the AsyncAPI document with an
#    injected error must be rejected; samples broken on purpose (no id, numeric status, no key)
#    must be rejected; and samples extended the way Authvia may extend them (a new field, a new
#    status value) must still be accepted.
#
# The tools are npm packages at pinned versions, installed once into a cache directory
# (BP_RELAY_CACHE, default ~/.cache/bp-relay); later runs need no network. Idempotent; works as
# root in a fresh clone. Needs node (18+) and npm. Exit 0 when everything holds, 1 otherwise.
set -euo pipefail

PARSER_VERSION="3.6.6"      # @asyncapi/parser
AJV_VERSION="8.20.0"        # ajv
AJV_FORMATS_VERSION="3.0.1" # ajv-formats

log() { printf '[check-asyncapi] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

command -v node >/dev/null 2>&1 || die "node is not on PATH"
command -v npm >/dev/null 2>&1 || die "npm is not on PATH"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/.." && pwd))
samples="${BP_RELAY_SAMPLES_DIR:-$root/docs/examples}"
[ -f "$root/docs/asyncapi.yaml" ] || die "missing $root/docs/asyncapi.yaml"
[ -d "$samples" ] || die "samples directory not found: $samples (set BP_RELAY_SAMPLES_DIR)"

cache="${BP_RELAY_CACHE:-${HOME:-/tmp}/.cache/bp-relay}"
tools="$cache/asyncapi-tools-parser$PARSER_VERSION-ajv$AJV_VERSION-formats$AJV_FORMATS_VERSION"
marker="$tools/.installed"

if [ ! -f "$marker" ]; then
  mkdir -p "$cache"
  exec 9>"$cache/.asyncapi-tools.lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  if [ ! -f "$marker" ]; then
    log "installing @asyncapi/parser@$PARSER_VERSION ajv@$AJV_VERSION ajv-formats@$AJV_FORMATS_VERSION into $tools"
    staging=$(mktemp -d "$cache/.asyncapi-tools.XXXXXX")
    # --ignore-scripts: none of these need install scripts (one transitive dependency has a
    # telemetry postinstall); keeps the install offline-safe and quiet.
    if ! npm install --prefix "$staging" --no-audit --no-fund --ignore-scripts --save-exact \
      --loglevel=error "@asyncapi/parser@$PARSER_VERSION" "ajv@$AJV_VERSION" \
      "ajv-formats@$AJV_FORMATS_VERSION" >"$staging.log" 2>&1; then
      cat "$staging.log" >&2
      rm -rf "$staging" "$staging.log"
      die "npm install failed"
    fi
    rm -f "$staging.log"
    rm -rf "$tools"
    mv "$staging" "$tools"
    date -u +%FT%TZ >"$marker"
  fi
  exec 9>&-
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/check.js" <<'JS'
'use strict';
const fs = require('fs');
const path = require('path');
const { Parser, fromFile, DiagnosticSeverity } = require('@asyncapi/parser');
const Ajv = require('ajv');
const addFormats = require('ajv-formats');

const [root, samplesDir, work] = process.argv.slice(2);
const doc = path.join(root, 'docs', 'asyncapi.yaml');
const schemaDir = path.join(root, 'docs', 'schemas');
const SEV = { 0: 'error', 1: 'warning', 2: 'info', 3: 'hint' };
let passed = 0;
let failed = 0;
const ok = (what) => { passed++; console.log(`ok    ${what}`); };
const bad = (what, detail) => {
  failed++;
  console.log(`FAIL  ${what}`);
  if (detail) console.log(String(detail).replace(/^/gm, '        '));
};
const fmtDiag = (d) => `${SEV[d.severity] || d.severity} ${d.code} at ${(d.path || []).join('.') || '(root)'}` +
  `${d.range ? ` (line ${d.range.start.line + 1})` : ''}: ${d.message}`;

async function parseFile(file) {
  const parser = new Parser();
  const { document, diagnostics } = await fromFile(parser, file).parse();
  const blocking = diagnostics.filter(
    (d) => d.severity === DiagnosticSeverity.Error || d.severity === DiagnosticSeverity.Warning);
  return { document, diagnostics, blocking };
}

async function main() {
  // ---- 1. The AsyncAPI document ----------------------------------------------------------
  const { document, diagnostics, blocking } = await parseFile(doc);
  for (const d of diagnostics) console.log(`      ${fmtDiag(d)}`);
  if (document && blocking.length === 0) {
    ok(`docs/asyncapi.yaml is valid AsyncAPI ${document.version()} (${diagnostics.length} info/hint diagnostics)`);
  } else {
    bad('docs/asyncapi.yaml', blocking.map(fmtDiag).join('\n') || 'no document produced');
  }

  if (document) {
    // The contract's fixed points: default topic names, one send operation per topic, the keyed
    // messages, and the closed dead-letter reason set.
    const addresses = document.channels().all().map((c) => c.address()).sort();
    const wantAddr = ['authvia.business-process-actions', 'authvia.business-processes', 'authvia.webhooks.dead-letter'];
    if (JSON.stringify(addresses) === JSON.stringify(wantAddr)) ok('channel addresses are the default topic names');
    else bad('channel addresses', `got ${JSON.stringify(addresses)}, want ${JSON.stringify(wantAddr)}`);

    const ops = document.operations().all();
    if (ops.length === 3 && ops.every((o) => o.action() === 'send')) ok('three send operations');
    else bad('operations', `got ${ops.map((o) => `${o.id()}:${o.action()}`).join(', ')}`);

    const msgs = Object.fromEntries(document.components().messages().all().map((m) => [m.id(), m]));
    for (const id of ['businessProcessUpdate', 'businessProcessActionUpdate']) {
      const m = msgs[id];
      const props = m && m.payload() ? Object.keys(m.payload().properties() || {}) : [];
      const key = m && m.bindings().get('kafka') && m.bindings().get('kafka').value().key;
      if (props.length > 5 && key && key.type === 'string') ok(`message ${id}: payload $ref resolved (${props.length} properties), string key`);
      else bad(`message ${id}`, `payload properties ${JSON.stringify(props)}, key ${JSON.stringify(key)}`);
    }
    const dl = msgs.deadLetter;
    const reason = dl && dl.headers() && dl.headers().properties().bp_relay_dead_letter_reason;
    const reasons = reason ? [...(reason.enum() || [])].sort() : [];
    const wantReasons = ['invalid_field', 'invalid_key', 'missing_field', 'missing_key', 'not_an_object', 'not_json'];
    if (JSON.stringify(reasons) === JSON.stringify(wantReasons)) ok('dead-letter reason is the closed set');
    else bad('dead-letter reason enum', `got ${JSON.stringify(reasons)}`);
  }

  // ---- 2. Payload schemas vs the sample deliveries ---------------------------------------
  const ajv = new Ajv({ strict: true, allErrors: true, allowUnionTypes: true });
  addFormats(ajv);

  // The parser does not check message examples against their schemas: do it here, with the
  // schemas as the parser resolved them ($refs inlined; its x-parser-* annotations removed).
  if (document) {
    const strip = (v) => Array.isArray(v) ? v.map(strip)
      : v && typeof v === 'object'
        ? Object.fromEntries(Object.entries(v).filter(([k]) => !k.startsWith('x-parser-')).map(([k, x]) => [k, strip(x)]))
        : v;
    const exAjv = new Ajv({ strict: true, allErrors: true, allowUnionTypes: true });
    addFormats(exAjv);
    for (const m of document.components().messages().all()) {
      const hv = m.headers() ? exAjv.compile(strip(m.headers().json())) : null;
      const pv = m.payload() ? exAjv.compile(strip(m.payload().json())) : null;
      const examples = m.examples().all();
      if (examples.length === 0) bad(`message ${m.id()}`, 'has no example');
      for (const ex of examples) {
        const what = `example ${m.id()}/${ex.name() || '?'}`;
        const problems = [];
        if (hv && !hv(ex.headers() || {})) problems.push(`headers: ${exAjv.errorsText(hv.errors)}`);
        if (pv && ex.payload() !== undefined && !pv(ex.payload())) problems.push(`payload: ${exAjv.errorsText(pv.errors)}`);
        if (problems.length === 0) ok(`${what} matches its headers and payload schemas`);
        else bad(what, problems.join('\n'));
        // Self-test: the same example with a malformed ce_id must be rejected.
        if (hv && ex.headers() && ex.headers().ce_id !== undefined) {
          if (hv({ ...ex.headers(), ce_id: 'NOT-A-SHA256' })) bad(`self-test: ${what} with a bad ce_id`, 'was accepted');
          else ok(`self-test: ${what} with a bad ce_id rejected`);
        }
      }
    }
  }
  const load = (f) => JSON.parse(fs.readFileSync(f, 'utf8'));
  const bpSchema = load(path.join(schemaDir, 'business-process.schema.json'));
  const actionSchema = load(path.join(schemaDir, 'business-process-action.schema.json'));
  let validateBp;
  let validateAction;
  try {
    validateBp = ajv.compile(bpSchema);
    ok('docs/schemas/business-process.schema.json compiles (Ajv strict, draft-07)');
  } catch (e) { bad('docs/schemas/business-process.schema.json', e.message); }
  try {
    validateAction = ajv.compile(actionSchema);
    ok('docs/schemas/business-process-action.schema.json compiles (Ajv strict, draft-07)');
  } catch (e) { bad('docs/schemas/business-process-action.schema.json', e.message); }
  if (!validateBp || !validateAction) return;

  const errs = (v) => ajv.errorsText(v.errors, { separator: '\n' });
  const files = fs.readdirSync(samplesDir).filter((f) => f.endsWith('.json')).sort();
  if (files.length === 0) bad(`samples in ${samplesDir}`, 'no *.json samples found');
  const samples = {};
  for (const f of files) {
    const data = load(path.join(samplesDir, f));
    samples[f] = data;
    let v;
    if (f.startsWith('action')) v = validateAction;
    else if (f.startsWith('bp')) v = validateBp;
    else { bad(`sample ${f}`, 'name starts with neither "bp" nor "action": which schema applies?'); continue; }
    if (v(data)) ok(`sample ${f} matches ${v === validateBp ? 'business-process' : 'business-process-action'} schema`);
    else bad(`sample ${f}`, errs(v));
  }

  // ---- 3. Self-tests: the checks can fail, and tolerate additive changes ----------------
  // 3a. A broken copy of the document must be rejected.
  const brokenDir = path.join(work, 'broken');
  fs.mkdirSync(path.join(brokenDir, 'schemas'), { recursive: true });
  for (const f of fs.readdirSync(schemaDir)) fs.copyFileSync(path.join(schemaDir, f), path.join(brokenDir, 'schemas', f));
  const text = fs.readFileSync(doc, 'utf8');
  const brokenText = text.replace(/^(\s+)action: send$/m, '$1action: publish'); // not a v3 action
  if (brokenText === text) bad('self-test: broken AsyncAPI', 'could not inject the error');
  else {
    fs.writeFileSync(path.join(brokenDir, 'asyncapi.yaml'), brokenText);
    const r = await parseFile(path.join(brokenDir, 'asyncapi.yaml'));
    if (r.blocking.length > 0) ok(`self-test: broken AsyncAPI copy rejected (${r.blocking[0].code}: ${r.blocking[0].message})`);
    else bad('self-test: broken AsyncAPI copy', 'the parser accepted an operation with action "publish"');
  }
  // 3b. Payloads broken on purpose must be rejected.
  const bpBase = samples['bp-minimal.json'] || samples[files.find((f) => f.startsWith('bp'))];
  const actBase = samples[files.find((f) => f.startsWith('action'))];
  const clone = (o) => JSON.parse(JSON.stringify(o));
  const must = (name, v, data, accept) => {
    const got = v(data);
    if (got === accept) ok(`self-test: ${name} ${accept ? 'accepted' : 'rejected'}`);
    else bad(`self-test: ${name}`, accept ? errs(v) : 'was accepted');
  };
  if (bpBase) {
    const noId = clone(bpBase); delete noId.id;
    must('process without id', validateBp, noId, false);
    const numStatus = clone(bpBase); numStatus.status = 3;
    must('process with numeric status', validateBp, numStatus, false);
    const emptyId = clone(bpBase); emptyId.id = '';
    must('process with empty id', validateBp, emptyId, false);
    must('array instead of process', validateBp, [bpBase], false);
    const extended = clone(bpBase);
    extended.status = 'paused'; extended.statusReason = 'some-new-reason'; extended.someNewField = { x: 1 };
    extended.addresses = [{ value: 'x@example.com', type: 'fax', status: 'new-status', extra: true }];
    must('process with new status value, new fields', validateBp, extended, true);
  }
  if (actBase) {
    const noKey = clone(actBase); delete noKey.businessProcess;
    must('action without businessProcess', validateAction, noKey, false);
    const extended = clone(actBase); extended.type = 'some-future-type'; extended.newField = 1;
    must('action with new type value, new field', validateAction, extended, true);
  }
}

main().then(() => {
  console.log(`check-asyncapi: ${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}, (e) => {
  console.log(`FAIL  unexpected error: ${e && e.stack ? e.stack : e}`);
  console.log(`check-asyncapi: ${passed} passed, ${failed + 1} failed`);
  process.exit(1);
});
JS

NODE_PATH="$tools/node_modules" node "$work/check.js" "$root" "$samples" "$work"
