#!/usr/bin/env bash
# The chart on a real Kubernetes API server: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler (v1.37.2) and kwok (simulated nodes and pod status; there is no kubelet), all on
# loopback, started and stopped by this script.
#
#   scripts/check-cluster.sh [CHART_DIR]        default: deploy/helm/bp-relay
#
# Builds its binaries from the Go module proxy at pinned versions (scripts/cluster/go.mod pins
# k8s.io/kubernetes and etcd; kwok with `go install`) into
# ${BP_RELAY_CACHE:-~/.cache/bp-relay}/tools/, like scripts/check-chart.sh's tools: the first
# run takes several minutes (kube-apiserver is the long pole), later runs none. CRDs: the
# Prometheus Operator's (ServiceMonitor, PrometheusRule, PodMonitor) from its Go module's source
# and Gateway API's HTTPRoute from its module, at pinned versions, cached.
#
# For each CHART_DIR/ci/*-values.yaml, in a namespace of its own that enforces the `restricted`
# Pod Security Standard (pod-security.kubernetes.io/enforce=restricted):
#   - server-side apply --dry-run=server --validate=strict of `helm template` (templates and test
#     pods): real admission (Pod Security included), real CRD validation, no unknown or
#     duplicate field, and no warning;
#   - helm install --wait: the ReplicaSet controller's pods are admitted, scheduled on kwok
#     nodes and Ready; PodDisruptionBudget, HPA, NetworkPolicy, Ingress, HTTPRoute,
#     ServiceMonitor, PrometheusRule as the values enable them;
#   - helm test: its pods are admitted and created. They cannot run here (no kubelet, no
#     image): this script marks them Succeeded, as a kubelet would after a good run;
#   - helm upgrade with the same values: the chart's Secrets (same uid, same data: the signing
#     one and the generated password of the chart-run Redis), the Deployment's selector and its
#     ReplicaSet stay; helm rollback; helm uninstall leaves
#     no object of the release in the namespace.
# Then the README's own `helm install` line, and one check that a chart whose container drops
# runAsNonRoot is refused (so the admission checks above can fail).
# Prints PASS/FAIL per check; exits non-zero if any failed. Needs go, openssl, curl, python3.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHART=$(cd "${1:-$ROOT/deploy/helm/bp-relay}" && pwd)
CACHE=${BP_RELAY_CACHE:-${HOME:-/root}/.cache/bp-relay}
TOOLS=$CACHE/tools
HELM_VERSION=$(sed -n 's/^HELM_VERSION=//p' "$ROOT/scripts/check-chart.sh")
HELM=$TOOLS/helm-$HELM_VERSION/helm

KUBE_VERSION=v1.37.2
KWOK_VERSION=v0.8.0
PROMETHEUS_OPERATOR_VERSION=v0.85.0
GATEWAY_API_VERSION=v1.6.3
BASE_PORT=${BP_RELAY_CLUSTER_PORT:-18370} # etcd +0/+1, kube-apiserver +2
START=$SECONDS

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  # Newest first (kwok ... etcd), each given 10 s after SIGTERM, then SIGKILL: a component whose
  # API server is gone may otherwise wait for it.
  local i pid deadline
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[$i]}
    kill "$pid" 2>/dev/null || continue
    deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '%s\n' "$*"; }
die() {
  log "check-cluster: $*"
  exit 1
}
PASSED=0
FAILED=0
FAILURES=()
check() { # NAME CMD...: PASS/FAIL, output shown on failure (or with VERBOSE=1)
  local name=$1 out=$WORK/check.log t0=$SECONDS
  shift
  printf '\n== %s\n' "$name"
  if "$@" >"$out" 2>&1; then
    PASSED=$((PASSED + 1))
    [[ -z ${VERBOSE:-} ]] || cat "$out"
    log "PASS $name ($((SECONDS - t0))s)$(tail -n 1 "$out" | sed -n 's/^RESULT: \(.*\)/: \1/p')"
  else
    FAILED=$((FAILED + 1))
    FAILURES+=("$name")
    tail -n 40 "$out"
    log "FAIL $name"
  fi
}
# wait_for SECONDS WHAT CMD...: runs CMD until it succeeds, at most SECONDS.
wait_for() {
  local limit=$1 what=$2 deadline=$((SECONDS + $1))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "$what: not within ${limit}s"
      return 1
    fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------------------------
# Binaries: built once per pin, cached.
# ---------------------------------------------------------------------------------------------
export GOPATH=$TOOLS/go-cluster GOMODCACHE=$TOOLS/go-cluster/mod GOCACHE=$TOOLS/go-cluster/cache
export GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOTOOLCHAIN=local
KUBE_PIN=$(cat "$ROOT/scripts/cluster/go.mod" "$ROOT/scripts/cluster/go.sum" | sha256sum | cut -c1-12)
KUBE_BIN=$TOOLS/kube-$KUBE_VERSION-$KUBE_PIN
KWOK_BIN=$TOOLS/kwok-$KWOK_VERSION
CRDS=$TOOLS/crds-po$PROMETHEUS_OPERATOR_VERSION-gw$GATEWAY_API_VERSION
KWOK_STAGES=$TOOLS/kwok-stages-$KWOK_VERSION

# The version the binaries report: built from the module they say v0.0.0-master, which the
# chart's kubeVersion constraint cannot match.
kube_ldflags() {
  local major minor pkg flags="-s -w"
  major=${KUBE_VERSION#v}
  major=${major%%.*}
  minor=$(cut -d. -f2 <<<"$KUBE_VERSION")
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  printf '%s' "$flags"
}
build_kube() {
  local t0=$SECONDS cmd dir=$KUBE_BIN.tmp
  rm -rf "$dir"
  mkdir -p "$dir"
  # One go build for all four: they share most packages.
  (cd "$ROOT/scripts/cluster" && nice go build -ldflags "$(kube_ldflags)" -o "$dir/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  (cd "$ROOT/scripts/cluster" && nice go build -ldflags "-s -w" -o "$dir/etcd" go.etcd.io/etcd/server/v3)
  mv "$dir" "$KUBE_BIN"
  log "  kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $KUBE_VERSION, etcd: built in $((SECONDS - t0))s"
}
build_kwok() {
  local t0=$SECONDS
  rm -rf "$KWOK_BIN.tmp"
  mkdir -p "$KWOK_BIN.tmp"
  (cd "$WORK" && GOBIN=$KWOK_BIN.tmp nice go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")
  mv "$KWOK_BIN.tmp" "$KWOK_BIN"
  log "  kwok $KWOK_VERSION: built in $((SECONDS - t0))s"
}
# The CRDs as their projects publish them, from the Go modules' sources.
fetch_crds() {
  local po gw
  rm -rf "$CRDS.tmp"
  mkdir -p "$CRDS.tmp"
  po=$(cd "$WORK" && go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  gw=$(cd "$WORK" && go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  cp "$po"/example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,prometheusrules,podmonitors}.yaml "$CRDS.tmp/"
  cp "$po/LICENSE" "$CRDS.tmp/LICENSE.prometheus-operator"
  cp "$gw/config/crd/standard/gateway.networking.k8s.io_httproutes.yaml" "$CRDS.tmp/"
  cp "$gw/LICENSE" "$CRDS.tmp/LICENSE.gateway-api"
  mv "$CRDS.tmp" "$CRDS"
  log "  CRDs: prometheus-operator $PROMETHEUS_OPERATOR_VERSION, gateway-api $GATEWAY_API_VERSION"
}
# kwok's own stages (what a simulated node and its pods do), from its module: nodes become
# Ready and keep a heartbeat; pods become Running and Ready, complete (Job pods) and are deleted.
fetch_kwok_stages() {
  local dir
  rm -rf "$KWOK_STAGES.tmp"
  mkdir -p "$KWOK_STAGES.tmp"
  dir=$(cd "$WORK" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  cp "$dir"/kustomize/stage/node/fast/node-initialize.yaml "$dir"/kustomize/stage/node/heartbeat/node-heartbeat.yaml \
    "$dir"/kustomize/stage/pod/fast/pod-{ready,complete,delete}.yaml "$KWOK_STAGES.tmp/"
  cp "$dir/LICENSE" "$KWOK_STAGES.tmp/"
  mv "$KWOK_STAGES.tmp" "$KWOK_STAGES"
  log "  kwok $KWOK_VERSION stages: $(cd "$KWOK_STAGES" && ls -- *.yaml | paste -sd' ')"
}
install_tools() {
  local t0=$SECONDS built=0
  printf '== tools\n'
  command -v go >/dev/null || die "go is required"
  [[ -x $HELM ]] || die "no helm at $HELM (scripts/check-chart.sh builds it; run it first)"
  if [[ -x $KUBE_BIN/kube-apiserver ]]; then log "  kube $KUBE_VERSION ($KUBE_PIN): cached"; else
    build_kube
    built=1
  fi
  if [[ -x $KWOK_BIN/kwok ]]; then log "  kwok $KWOK_VERSION: cached"; else
    build_kwok
    built=1
  fi
  if [[ -d $KWOK_STAGES ]]; then log "  kwok stages: cached"; else
    fetch_kwok_stages
    built=1
  fi
  if [[ -d $CRDS ]]; then log "  CRDs: cached"; else
    fetch_crds
    built=1
  fi
  if ((built)); then
    # The binaries are all a later run needs: drop the Go module and build caches (~6 GB).
    go clean -cache -modcache
  fi
  KUBECTL=$KUBE_BIN/kubectl
  log "tools ready in $((SECONDS - t0))s: $("$KUBE_BIN/kube-apiserver" --version), $("$KUBE_BIN/etcd" --version | head -n 1), kwok $KWOK_VERSION, helm $HELM_VERSION"
}

# ---------------------------------------------------------------------------------------------
# The control plane, on loopback
# ---------------------------------------------------------------------------------------------
ETCD_PORT=$BASE_PORT
API_PORT=$((BASE_PORT + 2))
export KUBECONFIG=$WORK/kubeconfig
export HELM_CONFIG_HOME=$WORK/helm/config HELM_CACHE_HOME=$WORK/helm/cache HELM_DATA_HOME=$WORK/helm/data

start() { # NAME CMD...: in the background, output in $WORK/NAME.log
  local name=$1
  shift
  "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
}
api_ready() { "$KUBECTL" get --raw /readyz; }
start_control_plane() {
  local t0=$SECONDS pki=$WORK/pki token
  mkdir -p "$pki"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  token=$(openssl rand -hex 16)
  printf '%s,admin,admin,system:masters\n' "$token" >"$pki/tokens.csv"
  start etcd "$KUBE_BIN/etcd" --data-dir "$WORK/etcd" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "default=http://127.0.0.1:$((ETCD_PORT + 1))" --log-level warn
  # --endpoint-reconciler-type none: on loopback the default reconciler refuses 127.0.0.1 as
  # the `kubernetes` Service's endpoint.
  start kube-apiserver "$KUBE_BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" --cert-dir "$pki" \
    --token-auth-file "$pki/tokens.csv" --authorization-mode RBAC \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range 10.96.0.0/16 --endpoint-reconciler-type none
  cat >"$KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster: {server: "https://127.0.0.1:$API_PORT", insecure-skip-tls-verify: true}
users:
  - name: admin
    user: {token: "$token"}
contexts:
  - name: local
    context: {cluster: local, user: admin}
current-context: local
EOF
  wait_for 120 "kube-apiserver /readyz" api_ready || {
    tail -n 20 "$WORK/kube-apiserver.log" "$WORK/etcd.log"
    return 1
  }
  start kube-controller-manager "$KUBE_BIN/kube-controller-manager" --kubeconfig "$KUBECONFIG" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 \
    --service-account-private-key-file "$pki/sa.key" --use-service-account-credentials=false
  start kube-scheduler "$KUBE_BIN/kube-scheduler" --kubeconfig "$KUBECONFIG" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port 0
  start kwok "$KWOK_BIN/kwok" --kubeconfig "$KUBECONFIG" --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --node-ip 10.0.0.1 --cidr 10.0.0.0/16 $(printf -- '--config %s ' "$KWOK_STAGES"/*.yaml)
  # Two simulated nodes in two zones (the topology spread and anti-affinity of the values).
  local zone
  for zone in a b; do
    "$KUBECTL" apply -f - <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$zone
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels:
    kubernetes.io/hostname: kwok-node-$zone
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    topology.kubernetes.io/zone: zone-$zone
    type: kwok
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
EOF
  done
  nodes_ready() { [[ $("$KUBECTL" get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True) == 2 ]]; }
  wait_for 60 "two Ready kwok nodes" nodes_ready || {
    tail -n 20 "$WORK/kwok.log"
    return 1
  }
  "$KUBECTL" apply --server-side -f "$CRDS" >/dev/null
  crds_established() { "$KUBECTL" wait --for condition=Established --timeout 5s crd --all; }
  wait_for 60 "CRDs established" crds_established || return 1
  "$KUBECTL" get --raw /version | python3 -c 'import json,sys; v=json.load(sys.stdin); print("RESULT: kube-apiserver " + v["gitVersion"] + ", 2 kwok nodes, CRDs: " + ", ".join(sorted(sys.argv[1:])))' \
    $("$KUBECTL" get crd -o name | sed 's#.*/##')
  log "control plane up in $((SECONDS - t0))s" >&2
}

# ---------------------------------------------------------------------------------------------
# Checks per scenario
# ---------------------------------------------------------------------------------------------
k() { "$KUBECTL" "$@"; }

# A namespace that enforces the restricted Pod Security Standard, with what the values refer to.
make_namespace() { # NS
  k create namespace "$1" &&
    k label namespace "$1" pod-security.kubernetes.io/enforce=restricted \
      pod-security.kubernetes.io/enforce-version=latest pod-security.kubernetes.io/warn=restricted &&
    k -n "$1" create secret generic bp-relay-signing --from-literal=signing-secrets=whsec_cluster_check &&
    k -n "$1" create secret generic bp-relay-actions-signing --from-literal=actions-signing-secrets=whsec_cluster_check_actions
}

# Server-side dry run of everything the chart renders (test pods included): admission, CRD
# schemas, strict field validation. Any warning fails too.
server_dry_run() { # NS VALUES
  "$HELM" template bp-relay "$CHART" -f "$2" --namespace "$1" --validate >"$WORK/rendered.yaml" || return 1
  k apply --server-side --dry-run=server --validate=strict --field-manager check-cluster \
    -n "$1" -f "$WORK/rendered.yaml" >"$WORK/apply.out" 2>"$WORK/apply.err" || {
    cat "$WORK/apply.out" "$WORK/apply.err"
    return 1
  }
  cat "$WORK/apply.out"
  if grep -i 'warning' "$WORK/apply.err"; then return 1; fi
  echo "RESULT: $(grep -c 'serverside-applied' "$WORK/apply.out") objects accepted ($(grep -o '^[a-z.]*' "$WORK/apply.out" | sed 's/\..*//' | sort | uniq -c | awk '{print $2 "×" $1}' | paste -sd' ')), no warning"
}

release_state() { # NS: what must survive an upgrade
  k -n "$1" get secret bp-relay -o jsonpath='{.metadata.uid} {.data}' 2>/dev/null || echo "no chart Secret"
  echo
  # The generated password of the chart-run Redis (replayStore.redis), kept by `lookup`.
  k -n "$1" get secret bp-relay-redis -o jsonpath='{.metadata.uid} {.data}' 2>/dev/null || echo "no chart Redis Secret"
  echo
  k -n "$1" get deployment bp-relay -o jsonpath='{.spec.selector}'
  echo
  k -n "$1" get replicaset -l app.kubernetes.io/instance=bp-relay -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'
}
pods_ready() { # NS: every pod of the Deployment Ready, as many as it wants
  local want ready
  want=$(k -n "$1" get deployment bp-relay -o jsonpath='{.spec.replicas}')
  ready=$(k -n "$1" get deployment bp-relay -o jsonpath='{.status.readyReplicas}')
  echo "$ready/$want pods Ready"
  [[ -n $ready && $ready == "$want" ]]
}

install() { # NS VALUES
  "$HELM" install bp-relay "$CHART" -n "$1" -f "$2" --wait --timeout 180s || {
    k -n "$1" get events --sort-by .lastTimestamp | tail -n 20
    return 1
  }
  pods_ready "$1" || return 1
  k -n "$1" get pods -o wide
  echo "RESULT: $(pods_ready "$1") on $(k -n "$1" get pods -o jsonpath='{.items[*].spec.nodeName}' | tr ' ' '\n' | sort -u | paste -sd,), $(k -n "$1" get all,pdb,networkpolicy,ingress,servicemonitor,prometheusrule,httproute -o name 2>/dev/null | sed 's#/.*##' | sort | uniq -c | awk '{print $2}' | paste -sd' ')"
}

# helm test: its pods must be admitted and created. Nothing runs them here, so once created
# each is marked Succeeded (what a kubelet reports after a good run) and helm test completes.
mark_test_pods_succeeded() { # NS
  local pod pods
  # Only once kwok made them Running: before that, kwok would overwrite the phase.
  pods=$(k -n "$1" get pods -l app.kubernetes.io/component=test -o jsonpath='{range .items[?(@.status.phase=="Running")]}{.metadata.name}{"\n"}{end}')
  for pod in $pods; do
    k -n "$1" patch pod "$pod" --subresource status --type merge \
      -p '{"status":{"phase":"Succeeded","conditions":[{"type":"Ready","status":"False","reason":"PodCompleted"}],"containerStatuses":null}}' >/dev/null
    echo "$pod" >>"$WORK/test-pods"
  done
  return 1 # keep polling until helm test returns
}
helm_test() { # NS
  : >"$WORK/test-pods"
  "$HELM" test bp-relay -n "$1" --timeout 120s >"$WORK/helm-test.log" 2>&1 &
  local helm_pid=$! deadline=$((SECONDS + 150))
  while kill -0 "$helm_pid" 2>/dev/null && ((SECONDS < deadline)); do
    mark_test_pods_succeeded "$1" || true
    sleep 0.5
  done
  local status=0
  wait "$helm_pid" || status=$?
  cat "$WORK/helm-test.log"
  ((status == 0)) || return 1
  [[ -s $WORK/test-pods ]] || {
    echo "helm test created no pod"
    return 1
  }
  echo "RESULT: created and admitted: $(sort -u "$WORK/test-pods" | paste -sd' ') (they cannot run here: no kubelet; marked Succeeded by this script)"
}

upgrade_keeps() { # NS VALUES
  release_state "$1" >"$WORK/before"
  "$HELM" upgrade bp-relay "$CHART" -n "$1" -f "$2" --wait --timeout 180s || return 1
  release_state "$1" >"$WORK/after"
  diff -u "$WORK/before" "$WORK/after" || {
    echo "the upgrade changed the chart's Secret, the selector or the ReplicaSets"
    return 1
  }
  echo "RESULT: revision $(k -n "$1" get secret -l owner=helm,name=bp-relay -o name | wc -l), Secret uid, data, selector and ReplicaSet unchanged"
}

rollback() { # NS
  "$HELM" rollback bp-relay 1 -n "$1" --wait --timeout 180s || return 1
  pods_ready "$1" || return 1
  echo "RESULT: $("$HELM" history bp-relay -n "$1" -o json | jq -r 'last | "revision \(.revision) \(.status): \(.description)"')"
}

uninstall_leaves_nothing() { # NS
  "$HELM" uninstall bp-relay -n "$1" --wait --timeout 120s || return 1
  gone() {
    local left
    left=$(k -n "$1" get all,configmap,secret,serviceaccount,pdb,hpa,networkpolicy,ingress,servicemonitor,prometheusrule,httproute,role,rolebinding \
      -l app.kubernetes.io/instance=bp-relay -o name) || return 1
    [[ -z $left ]]
  }
  wait_for 60 "the release's objects gone" gone "$1" || {
    k -n "$1" get all,configmap,secret,pdb,hpa,networkpolicy -l app.kubernetes.io/instance=bp-relay
    return 1
  }
  echo "RESULT: no object labelled app.kubernetes.io/instance=bp-relay left"
}

scenario() { # VALUES
  local name ns
  name=$(basename "$1" -values.yaml)
  ns=bp-relay-$name
  check "namespace $ns (enforce=restricted)" make_namespace "$ns"
  check "server-side apply --dry-run=server --validate=strict [$name]" server_dry_run "$ns" "$1"
  check "helm install --wait [$name]" install "$ns" "$1"
  check "helm test [$name]" helm_test "$ns"
  check "helm upgrade keeps Secret, selector, ReplicaSet [$name]" upgrade_keeps "$ns" "$1"
  check "helm rollback [$name]" rollback "$ns"
  check "helm uninstall leaves nothing [$name]" uninstall_leaves_nothing "$ns"
}

# The README's `helm install` command, as written (the registry placeholder filled in), in a
# restricted namespace with the signing Secret the README says to create first.
readme_install() {
  local cmd
  cmd=$(awk '/^helm install bp-relay /{on=1} on{print; if ($0 !~ /\\$/) exit}' "$ROOT/README.md")
  [[ -n $cmd ]] || {
    echo "no helm install line in README.md"
    return 1
  }
  make_namespace bp-relay >/dev/null || return 1
  cmd=${cmd//<your-registry>/registry.example.com}
  echo "$cmd"
  (cd "$ROOT" && eval "\"$HELM\" ${cmd#helm } --wait --timeout 180s") || return 1
  pods_ready bp-relay || return 1
  helm_test bp-relay >/dev/null || return 1
  echo "RESULT: the README's helm install: $(pods_ready bp-relay); helm test bp-relay -n bp-relay created its pods"
}

# The checks above must be able to fail: a chart whose container drops runAsNonRoot (at the
# pod level too) is refused by the restricted namespace.
refuses_root() {
  local bad=$WORK/chart-runasroot ns=bp-relay-induced
  cp -r "$CHART" "$bad"
  sed -i 's/^\(  *\)runAsNonRoot: true/\1runAsNonRoot: false/' "$bad/values.yaml"
  make_namespace "$ns" >/dev/null || return 1
  "$HELM" template bp-relay "$bad" -f "$CHART/ci/minimal-values.yaml" -n "$ns" --validate >"$WORK/bad.yaml" || return 1
  if k apply --server-side --dry-run=server --validate=strict -n "$ns" -f "$WORK/bad.yaml" >"$WORK/bad.out" 2>&1; then
    echo "a container with runAsNonRoot: false was admitted:"
    cat "$WORK/bad.out"
    return 1
  fi
  cat "$WORK/bad.out"
  grep -q 'violates PodSecurity' "$WORK/bad.out" || return 1
  echo "RESULT: refused: $(grep -m1 -o 'violates PodSecurity.*' "$WORK/bad.out" | cut -c1-200)"
}

main() {
  install_tools
  check "control plane on 127.0.0.1:$API_PORT" start_control_plane
  ((FAILED == 0)) || die "no control plane; logs were above"
  k create priorityclass high-priority --value 1000 >/dev/null # ci/full-values.yaml's
  local values
  for values in "$CHART"/ci/*-values.yaml; do
    scenario "$values"
  done
  check "README's helm install line" readme_install
  check "induced failure: runAsNonRoot: false is refused" refuses_root
  printf '\n'
  if ((FAILED > 0)); then
    log "failed checks:"
    printf '  %s\n' "${FAILURES[@]}"
  fi
  log "check-cluster: $PASSED passed, $FAILED failed in $((SECONDS - START))s"
  ((FAILED == 0))
}

main "$@"
