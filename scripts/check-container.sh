#!/usr/bin/env bash
# The relay in a container, as the chart runs it: the image of scripts/image.sh, run with crun
# under the pod's own security context taken from the rendered chart, against the real Kafka
# broker of the tests.
#
#   BP_RELAY_TEST_KAFKA=127.0.0.1:9092 scripts/check-container.sh
#
# 1. Renders the chart (ci/minimal-values.yaml, the broker and free ports set) with helm, and
#    turns the Deployment's pod into an OCI runtime config (scripts/container/pod_to_oci.py):
#    uid/gid 65532 with fsGroup, read-only root, no capabilities, noNewPrivileges, seccomp
#    RuntimeDefault (containers-common's profile), the chart's memory limit, the ConfigMap as
#    environment, the chart's Secret mounted read-only at the chart's path the way the kubelet
#    mounts a Secret (a timestamped directory, the `..data` symlink, file symlinks through it,
#    mode 0440, group fsGroup), the host's network (the broker advertises 127.0.0.1).
# 2. Starts the relay container; waits for /readyz (bounded).
# 3. A second container from the same image runs the chart's `helm test` pod (`bp-relay sign`
#    with the same security context, the Secret and a body as files): 2xx, and the record is in
#    Kafka (kcat, by its key). /metrics answers with bp_relay_build_info.
# 4. Rotates the secret the kubelet's way (new directory, `..data` swapped by rename): a delivery
#    signed with the new secret is accepted within a bound, the replaced one still during the
#    relay's grace period, one never configured refused.
# 5. SIGTERM (what the kubelet sends after preStop): the relay exits 0 within the chart's
#    terminationGracePeriodSeconds.
# Every wait is on a condition with a timeout. Needs root, crun, umoci, kcat, curl, python3 with
# PyYAML, helm (built into the chart tools cache by scripts/check-chart.sh if absent).
#
# Environment: BP_RELAY_TEST_KAFKA (required), BP_RELAY_CONTAINER_PORT (first of 2 free ports,
# default 9310), BP_RELAY_IMAGE_DIR (default target/image), KEEP_WORK=1 (keep the bundles and logs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHART=$ROOT/deploy/helm/bp-relay
IMAGE=${BP_RELAY_IMAGE_DIR:-$ROOT/target/image}:latest
CACHE=${BP_RELAY_CACHE:-${HOME:-/root}/.cache/bp-relay}
HELM_VERSION=$(sed -n 's/^HELM_VERSION=//p' "$ROOT/scripts/check-chart.sh")
HELM=$CACHE/tools/helm-$HELM_VERSION/helm
BROKER=${BP_RELAY_TEST_KAFKA:?BP_RELAY_TEST_KAFKA must name the test broker (scripts/test.sh sets it)}
HTTP_PORT=${BP_RELAY_CONTAINER_PORT:-9310}
ADMIN_PORT=$((HTTP_PORT + 1))
RUN_ID=$$-$(date +%s)
TOPIC=bp-relay-container-$RUN_ID # and -actions, -dead-letter: the three topics the relay needs
TOPICS=("$TOPIC" "$TOPIC-actions" "$TOPIC-dead-letter")
START=$SECONDS

say() { printf 'check-container: %s\n' "$*"; }
die() {
  say "FAIL: $*"
  if [[ -s ${WORK:-}/relay.log ]]; then
    say "the relay's last log lines:"
    tail -n 15 "$WORK/relay.log" | cut -c1-300
  fi
  exit 1
}
for tool in crun umoci kcat curl jq python3 unshare; do
  command -v "$tool" >/dev/null || die "$tool is required (.ci/run installs it)"
done
python3 -c 'import yaml' 2>/dev/null || die "python3 needs PyYAML (Debian python3-yaml)"
[[ $(id -u) == 0 ]] || die "must run as root (crun without a user namespace)"
if [[ ! -x $HELM ]]; then
  say "helm $HELM_VERSION not in the tools cache: building it"
  GOPATH=$CACHE/tools/go GOMODCACHE=$CACHE/tools/go/mod GOCACHE=$CACHE/tools/go/cache GOFLAGS=-buildvcs=false \
    CGO_ENABLED=0 GOTOOLCHAIN=local GOBIN=$(dirname "$HELM") go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
if [[ ! -f ${IMAGE%:latest}/index.json ]]; then
  say "no image at ${IMAGE%:latest}: scripts/image.sh"
  "$ROOT/scripts/image.sh" >/dev/null
fi

WORK=$(mktemp -d)
STATE=$WORK/crun
RELAY_PID=
cleanup() {
  local id
  for id in relay sign; do crun_ kill "$id" KILL >/dev/null 2>&1 || true; done
  [[ -z $RELAY_PID ]] || wait "$RELAY_PID" 2>/dev/null || true
  for id in relay sign; do crun_ delete --force "$id" >/dev/null 2>&1 || true; done
  local topic
  for topic in "${TOPICS[@]}"; do
    "$ROOT/scripts/kafka.sh" topics --port "${BROKER##*:}" delete "$topic" >/dev/null 2>&1 || true
  done
  [[ -n ${KEEP_WORK:-} ]] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
export HELM_CONFIG_HOME=$WORK/helm HELM_CACHE_HOME=$WORK/helm HELM_DATA_HOME=$WORK/helm

# crun in a private mount namespace without the cgroup2 mount at /sys/fs/cgroup/unified: on
# this hybrid cgroup layout it has no controllers, and crun would try to use it. The v1
# controllers (memory) stay.
crun_() {
  unshare --mount --propagation private bash -c \
    'if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi; exec crun --root "$0" "$@"' \
    "$STATE" "$@"
}

# wait_for SECONDS WHAT CMD...: runs CMD until it succeeds, at most SECONDS.
wait_for() {
  local limit=$1 what=$2 deadline=$((SECONDS + $1))
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what: not within ${limit}s"
    sleep 0.2
  done
}

step() { printf '\n== %s\n' "$*"; }

# --- 1. The chart's pod, rendered ------------------------------------------------------------
step "render the chart and make the OCI bundles"
SECRET_ONE=whsec_container_$RUN_ID-one
SECRET_TWO=whsec_container_$RUN_ID-two
"$HELM" template bp-relay "$CHART" -f "$CHART/ci/minimal-values.yaml" --namespace bp-relay --kube-version 1.37.2 \
  --set "kafka.brokers=$BROKER" --set "ports.http=$HTTP_PORT" --set "ports.metrics=$ADMIN_PORT" \
  --set "relay.topics.businessProcesses=$TOPIC" --set "relay.topics.actions=$TOPIC-actions" \
  --set "relay.topics.deadLetter=$TOPIC-dead-letter" --set "signing.secrets={$SECRET_ONE}" \
  --set listenAddress=127.0.0.1 >"$WORK/rendered.yaml"
python3 - "$WORK/rendered.yaml" >"$WORK/pod.env" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
dep = next(d for d in docs if d["kind"] == "Deployment")
pod = dep["spec"]["template"]["spec"]
secrets_mount = next(m["mountPath"] for m in pod["containers"][0]["volumeMounts"] if m["name"] == "secrets")
volume = next(v for v in pod["volumes"] if v["name"] == "secrets")
print(f"GRACE={pod['terminationGracePeriodSeconds']}")
print(f"SECRETS_MOUNT={secrets_mount}")
print(f"SECRETS_MODE={volume['projected']['defaultMode']:o}")
print(f"FS_GROUP={pod['securityContext'].get('fsGroup', 0)}")
test = next(d for d in docs if d["kind"] == "Pod" and d["metadata"]["name"].endswith("-test-delivery"))
print(f"TEST_BODY_DIR={next(m['mountPath'] for m in test['spec']['containers'][0]['volumeMounts'] if m['name'] == 'body')}")
print(f"TEST_URL={next(a for a in test['spec']['containers'][0]['args'] if a.startswith('http://'))}")
PY
# shellcheck disable=SC1091
. "$WORK/pod.env"
say "pod: grace ${GRACE}s, secrets at $SECRETS_MOUNT (mode $SECRETS_MODE, group $FS_GROUP)"

# A Secret volume the way the kubelet's atomic writer lays it out.
SECRETS=$WORK/secrets
write_secret_version() { # NAME VALUE
  local dir=$SECRETS/..$1
  mkdir -p "$dir"
  printf '%s' "$2" >"$dir/signing-secrets"
  chown -R "0:$FS_GROUP" "$dir"
  chmod "$SECRETS_MODE" "$dir/signing-secrets"
  chmod 0755 "$dir"
  ln -sfn "..$1" "$SECRETS/..data_tmp"
  mv -T "$SECRETS/..data_tmp" "$SECRETS/..data"
}
mkdir -p "$SECRETS"
chmod 1777 "$SECRETS"
write_secret_version 2026_01_01_00_00_00.000000001 "$SECRET_ONE"
ln -s ..data/signing-secrets "$SECRETS/signing-secrets"

make_bundle() { # NAME (bundle dir $WORK/NAME)
  umoci unpack --image "$IMAGE" "$WORK/$1" >/dev/null
}
make_bundle relay
python3 "$ROOT/scripts/container/pod_to_oci.py" "$WORK/rendered.yaml" "$WORK/relay/config.json" \
  --kind Deployment --name bp-relay --container bp-relay --volume "secrets=$SECRETS" | sed 's/^/  relay: /'

# The helm test pod: the body file (downward API in the cluster) and the signing Secret.
make_bundle sign
mkdir -p "$WORK/body"
BP_ID=bp-container-$RUN_ID
jq --arg id "$BP_ID" '.id = $id' "$ROOT/docs/examples/bp-in-progress.json" >"$WORK/body/body.json"
chmod -R a+rX "$WORK/body"
python3 "$ROOT/scripts/container/pod_to_oci.py" "$WORK/rendered.yaml" "$WORK/sign/config.json" \
  --kind Pod --name bp-relay-test-delivery --container sign \
  --volume "body=$WORK/body" --volume "signing-secret=$SECRETS" \
  --arg-replace "$TEST_URL=http://127.0.0.1:$HTTP_PORT/webhooks/business-processes" | sed 's/^/  sign:  /'

# --- 2. The relay ----------------------------------------------------------------------------
step "start the relay container (crun)"
for topic in "${TOPICS[@]}"; do
  "$ROOT/scripts/kafka.sh" topics --port "${BROKER##*:}" create "$topic" 1 >/dev/null
done
crun_ run --bundle "$WORK/relay" relay >"$WORK/relay.log" 2>&1 &
RELAY_PID=$!
ready() { curl -fsS "http://127.0.0.1:$ADMIN_PORT/readyz"; }
t0=$SECONDS
wait_for 60 "/readyz of the relay container" ready
say "/readyz answers 200 after $((SECONDS - t0))s"
# What the runtime applied, seen from the host: the process's uid, groups, capabilities,
# seccomp and no_new_privs (in /proc/PID/status), and its memory cgroup's limit.
PID=$(crun_ state relay | jq -r .pid)
status=$(cat "/proc/$PID/status")
grep -E '^(Uid|Gid|Groups|CapEff|CapBnd|NoNewPrivs|Seccomp):' <<<"$status" | sed 's/^/  /'
grep -Eq '^Uid:\s+65532\s+65532\s+65532\s+65532' <<<"$status" || die "the relay does not run as uid 65532"
grep -Eq '^CapEff:\s+0+$' <<<"$status" || die "the relay has capabilities"
grep -Eq '^NoNewPrivs:\s+1' <<<"$status" || die "no_new_privs is not set"
grep -Eq '^Seccomp:\s+2' <<<"$status" || die "no seccomp filter"
memcg=$(awk -F: '$2 == "memory" {print $3}' "/proc/$PID/cgroup")
if [[ -n $memcg ]]; then # cgroup v1 (this machine's memory controller)
  limit=$(cat "/sys/fs/cgroup/memory$memcg/memory.limit_in_bytes")
else # cgroup v2
  limit=$(cat "/sys/fs/cgroup$(awk -F: '$1 == "0" {print $3}' "/proc/$PID/cgroup")/memory.max")
fi
say "memory cgroup limit: $limit bytes"
[[ $limit == "$(jq '.linux.resources.memory.limit' "$WORK/relay/config.json")" ]] || die "memory limit not applied"
root_options=$(awk '$5 == "/" {print $6}' "/proc/$PID/mountinfo")
[[ ,$root_options, == *,ro,* ]] || die "the root filesystem is mounted $root_options"
say "root filesystem mounted $root_options"

# --- 3. A signed delivery from a second container --------------------------------------------
step "signed delivery from the helm test container"
sign_once() { # exit status of `bp-relay sign` in its container; its output in $WORK/sign.log
  crun_ run --bundle "$WORK/sign" sign >"$WORK/sign.log" 2>&1
}
sign_once || {
  cat "$WORK/sign.log"
  die "the signed delivery was not accepted"
}
sed 's/^/  /' "$WORK/sign.log"
in_kafka() { # KEY
  timeout 20 kcat -C -b "$BROKER" -t "$TOPIC" -o beginning -e -q -f '%k\n' | grep -qxF "$1"
}
wait_for 20 "the record keyed $BP_ID in $TOPIC" in_kafka "$BP_ID"
say "record keyed $BP_ID is in $TOPIC"
metrics=$(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics") || die "/metrics does not answer"
grep -m1 '^bp_relay_build_info' <<<"$metrics" | sed 's/^/  /'
grep -q '^bp_relay_build_info' <<<"$metrics" || die "/metrics has no bp_relay_build_info"

# --- 4. Rotation by symlink swap -------------------------------------------------------------
step "rotate the Secret (..data swap)"
write_secret_version 2026_01_01_00_01_00.000000002 "$SECRET_TWO"
t0=$SECONDS
wait_for 30 "a delivery signed with the rotated secret" sign_once
say "a delivery signed with the new secret is accepted $((SECONDS - t0))s after the swap"
reloads=$(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '$1 == "bp_relay_signing_secrets_reloads_total" {print $2}')
say "bp_relay_signing_secrets_reloads_total $reloads"
[[ ${reloads:-0} -ge 1 ]] || die "no reload counted"
# The sign container reads the same volume; to sign with other secrets it gets a copy.
sign_with() { # SECRET
  rm -rf "$WORK/other" && mkdir -p "$WORK/other" && printf '%s' "$1" >"$WORK/other/signing-secrets" &&
    chmod -R a+rX "$WORK/other"
  jq --arg dir "$WORK/other" '(.mounts[] | select(.destination == "/var/run/bp-relay-test-secret") | .source) = $dir' \
    "$WORK/sign/config.json" >"$WORK/sign/config.new" && mv "$WORK/sign/config.new" "$WORK/sign/config.json"
  sign_once
}
# The replaced secret stays valid for the relay's grace period (rotation without a cut-over).
sign_with "$SECRET_ONE" || die "a delivery signed with the replaced secret was refused within its grace period"
say "the replaced secret is still accepted (grace period): $(head -c 60 "$WORK/sign.log")"
if sign_with "whsec_never_configured_$RUN_ID"; then
  cat "$WORK/sign.log"
  die "a delivery signed with a secret never configured was accepted"
fi
say "a delivery signed with a secret never configured is refused: $(head -c 60 "$WORK/sign.log")"
grep -q '"Signing secrets reloaded' "$WORK/relay.log" || die "no reload in the relay's log"

# --- 5. SIGTERM ------------------------------------------------------------------------------
step "SIGTERM drains within terminationGracePeriodSeconds (${GRACE}s)"
t0=$SECONDS
crun_ kill relay TERM
exited() { ! kill -0 "$RELAY_PID" 2>/dev/null; }
wait_for "$GRACE" "the relay's exit after SIGTERM" exited
status=0
wait "$RELAY_PID" || status=$?
RELAY_PID=
say "exited with status $status $((SECONDS - t0))s after SIGTERM"
((status == 0)) || {
  tail -n 20 "$WORK/relay.log"
  die "the relay exited with status $status"
}
grep -c . "$WORK/relay.log" | xargs printf '  (%s log lines, JSON; the last:)\n'
tail -n 1 "$WORK/relay.log" | cut -c1-200 | sed 's/^/  /'
say "PASS in $((SECONDS - START))s"
