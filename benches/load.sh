#!/usr/bin/env bash
# Load benchmark: the release binary against a real Kafka broker, driven by wrk with distinct,
# correctly signed deliveries (each with its own X-AUTHVIA-VALUE, so the replay guard sees
# real traffic). Prints wrk's figures and the relay's peak memory, then checks that Kafka holds
# at least as many records as wrk counted 2xx answers.
#
#   benches/load.sh [DURATION] [CONNECTIONS]        defaults: 30s 32
#
# Needs: wrk and kcat (apt), python3, Java + Maven for the broker (scripts/kafka.sh).
# Uses the broker on $BP_RELAY_TEST_KAFKA (default 127.0.0.1:9092), starting one there if none.
# Bounded: wrk runs for DURATION only, against 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DURATION="${1:-30s}"
CONNECTIONS="${2:-32}"
BROKER="${BP_RELAY_TEST_KAFKA:-127.0.0.1:9092}"
PORT="${BROKER##*:}"
SECRET="whsec_load_$(date +%s)"
WORK="$(mktemp -d)"
RELAY_PID=""
cleanup() {
  [[ -n "$RELAY_PID" ]] && kill -TERM "$RELAY_PID" 2>/dev/null && wait "$RELAY_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

for tool in wrk kcat python3; do
  command -v "$tool" >/dev/null || { echo "load.sh: $tool is missing (apt-get install wrk kcat)" >&2; exit 1; }
done
scripts/kafka.sh status --port "$PORT" >/dev/null 2>&1 || scripts/kafka.sh start --port "$PORT"
TOPIC="load.bp.$(date +%s)"
for t in "$TOPIC" "$TOPIC.actions" "$TOPIC.dlq"; do scripts/kafka.sh topics --port "$PORT" create "$t" 6 >/dev/null; done

cargo build --release --locked --quiet
target/release/bp-relay --kafka-brokers "$BROKER" --signing-secrets "$SECRET" \
  --topic "$TOPIC" --actions-topic "$TOPIC.actions" --dead-letter-topic "$TOPIC.dlq" \
  --listen 127.0.0.1:18080 --admin-listen 127.0.0.1:19090 --log-format json \
  >"$WORK/relay.log" 2>&1 &
RELAY_PID=$!
for _ in $(seq 1 100); do
  curl -fs http://127.0.0.1:19090/readyz >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs http://127.0.0.1:19090/readyz >/dev/null || { cat "$WORK/relay.log"; exit 1; }

# 20,000 distinct signed deliveries (distinct process ids, values and bodies), cycled by wrk.
python3 - "$SECRET" "$WORK/requests.lua" <<'PY'
import base64, hashlib, hmac, json, sys, time, uuid
secret, out = sys.argv[1], sys.argv[2]
sample = json.load(open("docs/examples/business-process.json"))
ts = str(int(time.time()))
lines = ["local requests = {}"]
for i in range(20000):
    sample["id"] = str(uuid.uuid4())
    body = json.dumps(sample, separators=(",", ":"))
    value = uuid.uuid4().hex
    msg = f"{value}.{len(value)}.{ts}".encode()
    sig = base64.b64encode(hmac.new(secret.encode(), msg, hashlib.sha256).digest()).decode()
    headers = {"Content-Type": "application/json", "X-AUTHVIA-SIGNATURE": sig, "X-AUTHVIA-VALUE": value,
               "X-AUTHVIA-TIMESTAMP": ts, "X-AUTHVIA-ALGORITHM": "SHA-256"}
    lua_headers = ",".join(f'["{k}"]="{v}"' for k, v in headers.items())
    lines.append(f'requests[{i + 1}] = wrk.format("POST", "/webhooks/business-processes", {{{lua_headers}}}, {json.dumps(body)})')
lines += [
    "local n = 0",
    "function request() n = n % #requests + 1; return requests[n] end",
    "local non2xx = 0",
    "function response(status) if status < 200 or status > 299 then non2xx = non2xx + 1 end end",
    'function done(summary, latency) io.write(string.format("p50=%.2fms p90=%.2fms p99=%.2fms max=%.2fms\\n", latency:percentile(50)/1000, latency:percentile(90)/1000, latency:percentile(99)/1000, latency.max/1000)) end',
]
open(out, "w").write("\n".join(lines) + "\n")
PY

echo "== wrk -t2 -c$CONNECTIONS -d$DURATION (relay: acks=all, idempotent, lz4, linger 5ms; broker: $BROKER)"
wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/requests.lua" http://127.0.0.1:18080 | tee "$WORK/wrk.txt"
curl -fs http://127.0.0.1:19090/metrics | grep -E '^bp_relay_http_requests_total|^bp_relay_delivery_lag_seconds_(sum|count)' || true
echo "== relay peak RSS: $(grep VmHWM /proc/$RELAY_PID/status | awk '{print $2, $3}')"
ok=$(curl -fs http://127.0.0.1:19090/metrics | awk -F' ' '/^bp_relay_http_requests_total\{route="business_processes",status="200"\}/ {print $2}')
in_kafka=$(kcat -Q -b "$BROKER" -t "$TOPIC:0:-1" -t "$TOPIC:1:-1" -t "$TOPIC:2:-1" -t "$TOPIC:3:-1" -t "$TOPIC:4:-1" -t "$TOPIC:5:-1" 2>/dev/null | awk '{s+=$NF} END {print s}')
echo "== 2xx answers: ${ok:-0}; records in $TOPIC: ${in_kafka:-0}"
if [[ "${in_kafka:-0}" -lt "${ok%.*}" ]]; then
  echo "load.sh: FEWER records in Kafka than 2xx answers" >&2
  exit 1
fi
