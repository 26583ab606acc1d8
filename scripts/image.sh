#!/usr/bin/env bash
# Assembles the bp-relay image without a registry or a container engine, as an OCI image layout
# in target/image/ (reference `target/image:latest`), and inspects it.
#
#   scripts/image.sh [BINARY]      BINARY default: $BP_RELAY_BIN, else the one release build
#                                  (scripts/release-build.sh)
#
# deploy/Dockerfile stays the published recipe; this is the same image made here:
# - the binary is CI's one release build, made the Dockerfile's way (static zlib, cargo auditable);
# - the base replaces gcr.io/distroless/cc-debian12:nonroot (not reachable here) with the same
#   content made from the build host's own Debian packages, so glibc is the one the binary was
#   linked against: libc6, libgcc-s1 and its gcc-N-base (licences), the CA bundle of the host's
#   ca-certificates package, /etc/passwd and /etc/group with nonroot (65532), /etc/os-release,
#   /tmp and /home/nonroot, and distroless' /var/lib/dpkg/status.d/ records so that scanners
#   know the packages. Package versions are the ones installed on the host (apt-get download).
#   No shell, no package manager, no other program: only the dynamic loader and the relay;
# - labels, user, entrypoint and exposed ports are READ from deploy/Dockerfile's runtime stage
#   (dockerfile-parse, with the build arguments its header documents), not restated here.
# Tools: umoci (Debian) writes the layout; dockerfile-parse (PyPI, pinned, cached) reads the
# Dockerfile; rust-audit-info (.ci/run) reads the audit data. The base rootfs is cached in
# ${BP_RELAY_CACHE:-~/.cache/bp-relay}/image-base/<package versions>/.
#
# Checks, each printed PASS/FAIL (exit non-zero if any fails): the config matches the Dockerfile;
# the only executables are the loader and the relay (no shell, no package manager); the loader
# of the base resolves every library the binary needs (ld.so --list in the rootfs: what `ldd`
# reports, from the base itself); the relay runs in the rootfs (`--version`); the cargo auditable
# data lists the dependency tree; the size.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DOCKERFILE=$ROOT/deploy/Dockerfile
OUT=${BP_RELAY_IMAGE_DIR:-$ROOT/target/image}
TAG=latest
CACHE=${BP_RELAY_CACHE:-${HOME:-/root}/.cache/bp-relay}
DOCKERFILE_PARSE_VERSION=2.0.1
MAX_IMAGE_MB=80 # compressed layers; the relay alone is ~20 MB, the base ~4 MB
START=$SECONDS

say() { printf 'image: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}
for tool in umoci jq apt-get dpkg-deb readelf chroot; do
  command -v "$tool" >/dev/null || die "$tool is required (.ci/run installs it)"
done
[[ $(id -u) == 0 ]] || die "must run as root (umoci keeps file ownership, chroot runs the loader)"

BIN=${1:-${BP_RELAY_BIN:-}}
if [[ -z $BIN ]]; then
  BIN=$("$ROOT/scripts/release-build.sh")
fi
[[ -x $BIN ]] || die "no binary at $BIN"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------------------------------------
# What the Dockerfile says, with the build arguments its header documents.
# ---------------------------------------------------------------------------------------------
py_tools() {
  local venv=$CACHE/tools/venv-dockerfile-parse-$DOCKERFILE_PARSE_VERSION
  if [[ ! -f $venv/.complete ]]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
      "dockerfile-parse==$DOCKERFILE_PARSE_VERSION"
    touch "$venv/.complete"
  fi
  PY=$venv/bin/python
}
py_tools

SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
VERSION=$(git describe --tags --always 2>/dev/null || echo unknown)
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# The runtime stage's config as JSON: labels, user, entrypoint (exec form), exposed ports.
"$PY" - "$DOCKERFILE" "$VERSION" "$REVISION" "$CREATED" >"$WORK/dockerfile.json" <<'PY'
import json, sys
from dockerfile_parse import DockerfileParser

path, version, revision, created = sys.argv[1:]
parser = DockerfileParser(path, build_args={"VERSION": version, "REVISION": revision, "CREATED": created})
stages = [i for i in parser.structure if i["instruction"] == "FROM"]
last = stages[-1]["startline"]
config = {"labels": parser.labels, "user": None, "entrypoint": None, "exposed": []}
for i in parser.structure:
    if i["startline"] < last:
        continue
    if i["instruction"] == "USER":
        config["user"] = i["value"]
    elif i["instruction"] == "ENTRYPOINT":
        config["entrypoint"] = json.loads(i["value"])
    elif i["instruction"] == "EXPOSE":
        config["exposed"] += [p if "/" in p else p + "/tcp" for p in i["value"].split()]
missing = [k for k, v in config.items() if not v]
if missing:
    sys.exit(f"the runtime stage of {path} has no {', '.join(missing)}")
print(json.dumps(config))
PY
USER_SPEC=$(jq -r .user "$WORK/dockerfile.json")
ENTRYPOINT_PATH=$(jq -r '.entrypoint[0]' "$WORK/dockerfile.json")
say "Dockerfile runtime stage: USER $USER_SPEC, ENTRYPOINT $(jq -c .entrypoint "$WORK/dockerfile.json"), EXPOSE $(jq -r '.exposed | join(" ")' "$WORK/dockerfile.json")"

# ---------------------------------------------------------------------------------------------
# The base: the host's own Debian packages, cached by their versions.
# ---------------------------------------------------------------------------------------------
installed_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }
# libgcc-s1 depends on its compiler's gcc-N-base (licences): take the name from its Depends.
GCC_BASE=$(dpkg-query -W -f='${Depends}' libgcc-s1 | tr ',' '\n' | sed -n 's/^ *\(gcc-[0-9]*-base\).*/\1/p' | head -n 1)
PACKAGES=(libc6 libgcc-s1 "$GCC_BASE")
PINS=()
for pkg in "${PACKAGES[@]}" ca-certificates base-files; do
  v=$(installed_version "$pkg") || die "$pkg is not installed on this host"
  PINS+=("$pkg=$v")
done
BASE_KEY=$(printf '%s\n' "${PINS[@]}" "$(uname -m)" | sha256sum | cut -c1-16)
BASE=$CACHE/image-base/$BASE_KEY

make_base() {
  local rootfs=$BASE.tmp/rootfs deb pkg
  rm -rf "$BASE.tmp"
  mkdir -p "$rootfs" "$BASE.tmp/debs"
  (cd "$BASE.tmp/debs" && apt-get download -q -o APT::Sandbox::User=root "${PINS[@]:0:${#PACKAGES[@]}}") >&2
  mkdir -p "$rootfs/var/lib/dpkg/status.d"
  for deb in "$BASE.tmp"/debs/*.deb; do
    pkg=$(dpkg-deb -f "$deb" Package)
    dpkg-deb -x "$deb" "$rootfs"
    # distroless' record of an installed package, read by image scanners.
    dpkg-deb -f "$deb" >"$rootfs/var/lib/dpkg/status.d/$pkg"
  done
  # Programs that come with libc6 (ldd is a bash script; getconf, iconv, ...) are not part of
  # the distroless base either: only libraries, the loader, data and licences stay.
  rm -rf "$rootfs"/usr/bin "$rootfs"/usr/sbin "$rootfs"/sbin "$rootfs"/bin \
    "$rootfs"/usr/share/man "$rootfs"/usr/share/info "$rootfs"/usr/share/lintian
  find "$rootfs/usr/share/doc" -type f ! -name copyright -delete
  # The CA bundle update-ca-certificates built from the host's ca-certificates package.
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  install -D -m 0644 /usr/lib/os-release "$rootfs/etc/os-release"
  cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
  printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
  chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/nsswitch.conf"
  install -d -m 1777 "$rootfs/tmp"
  install -d -m 0700 -o 65532 -g 65532 "$rootfs/home/nonroot"
  install -d -m 0700 "$rootfs/root"
  printf '%s\n' "${PINS[@]}" >"$BASE.tmp/packages"
  rm -rf "$BASE.tmp/debs" "$BASE"
  mv "$BASE.tmp" "$BASE"
}
if [[ -d $BASE/rootfs ]]; then
  say "base rootfs: cached ($BASE)"
else
  t0=$SECONDS
  make_base
  say "base rootfs: made from $(paste -sd' ' "$BASE/packages") in $((SECONDS - t0))s"
fi

# ---------------------------------------------------------------------------------------------
# The OCI layout: layer 1 the base, layer 2 the relay; the config from the Dockerfile.
# ---------------------------------------------------------------------------------------------
t0=$SECONDS
rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
umoci init --layout "$OUT"
umoci new --image "$OUT:$TAG"
# Every file stamped with the commit time, as BuildKit's rewrite-timestamp does.
stamp() { find "$1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +; }
add_layer() { # DIR-WITH-CONTENT WHAT
  rm -rf "$WORK/bundle"
  umoci unpack --image "$OUT:$TAG" "$WORK/bundle" >/dev/null
  cp -a "$1/." "$WORK/bundle/rootfs/"
  stamp "$WORK/bundle/rootfs"
  umoci repack --image "$OUT:$TAG" --history.created "$CREATED" --history.created_by "$2" "$WORK/bundle"
}
add_layer "$BASE/rootfs" "base: $(paste -sd' ' "$BASE/packages")"
mkdir -p "$WORK/app$(dirname "$ENTRYPOINT_PATH")"
install -m 0755 "$BIN" "$WORK/app$ENTRYPOINT_PATH"
add_layer "$WORK/app" "COPY bp-relay $ENTRYPOINT_PATH"

config_args=(--config.user "$USER_SPEC" --created "$CREATED" --author "bp-relay scripts/image.sh"
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
  --config.workingdir /home/nonroot --clear=config.entrypoint --clear=config.cmd)
while IFS= read -r arg; do config_args+=(--config.entrypoint "$arg"); done < <(jq -r '.entrypoint[]' "$WORK/dockerfile.json")
while IFS= read -r port; do config_args+=(--config.exposedports "$port"); done < <(jq -r '.exposed[]' "$WORK/dockerfile.json")
while IFS= read -r label; do config_args+=(--config.label "$label"); done < <(jq -r '.labels | to_entries[] | "\(.key)=\(.value)"' "$WORK/dockerfile.json")
umoci config --image "$OUT:$TAG" --history.created "$CREATED" --history.created_by "config from deploy/Dockerfile" "${config_args[@]}"
umoci gc --layout "$OUT"
say "OCI layout $OUT:$TAG assembled in $((SECONDS - t0))s"

# ---------------------------------------------------------------------------------------------
# Inspection
# ---------------------------------------------------------------------------------------------
PASSED=0
FAILED=0
check() { # NAME CMD...
  local name=$1 log=$WORK/check.log
  shift
  if "$@" >"$log" 2>&1; then
    PASSED=$((PASSED + 1))
    printf 'PASS %s: %s\n' "$name" "$(tail -n 1 "$log")"
  else
    FAILED=$((FAILED + 1))
    printf 'FAIL %s\n' "$name"
    tail -n 30 "$log" | sed 's/^/    /'
  fi
}

blob() { printf '%s/blobs/%s' "$OUT" "${1/://}"; }
MANIFEST=$(blob "$(jq -r --arg t "$TAG" '.manifests[] | select(.annotations."org.opencontainers.image.ref.name" == $t) | .digest' "$OUT/index.json")")
CONFIG=$(blob "$(jq -r .config.digest "$MANIFEST")")
rm -rf "$WORK/bundle"
umoci unpack --image "$OUT:$TAG" "$WORK/bundle" >/dev/null
ROOTFS=$WORK/bundle/rootfs

config_matches_dockerfile() {
  jq -S '{labels: .config.Labels, user: .config.User, entrypoint: .config.Entrypoint,
          exposed: (.config.ExposedPorts | keys)}' "$CONFIG" >"$WORK/image-config.json"
  jq -S '{labels, user, entrypoint, exposed: (.exposed | sort)}' "$WORK/dockerfile.json" >"$WORK/want-config.json"
  diff -u "$WORK/want-config.json" "$WORK/image-config.json" || return 1
  echo "labels ($(jq '.labels | length' "$WORK/want-config.json")), user, entrypoint and exposed ports as in deploy/Dockerfile"
}

# Every regular file with an execute bit, other than shared libraries: exactly the loader and
# the relay. A shell, a package manager, busybox or coreutils would show up here.
only_loader_and_relay() {
  local found
  found=$(cd "$ROOTFS" && find . -type f -perm /111 ! -name '*.so' ! -name '*.so.*' | sed 's#^\.##' | sort)
  printf '%s\n' "$found"
  [[ $found == "$ENTRYPOINT_PATH" ]] || return 1
}
no_shell_no_package_manager() {
  local hits
  hits=$(cd "$ROOTFS" && find . ! -type d \( -name sh -o -name bash -o -name dash -o -name ash -o -name busybox \
    -o -name dpkg -o -name apt -o -name apt-get -o -name rpm -o -name apk -o -name microdnf \) | sort)
  if [[ -n $hits ]]; then
    printf 'found: %s\n' "$hits"
    return 1
  fi
  only_loader_and_relay >/dev/null || {
    echo "executables besides $ENTRYPOINT_PATH:"
    only_loader_and_relay
    return 1
  }
  echo "no shell, no package manager; the only executable is $ENTRYPOINT_PATH (plus the loader, a .so)"
}

# What `ldd` does, done by the base's own loader inside the base: any "not found" fails.
libraries_resolved() {
  local interp out
  interp=$(readelf -l "$ROOTFS$ENTRYPOINT_PATH" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
  [[ -e $ROOTFS$interp ]] || {
    echo "the base has no $interp (the binary's program interpreter)"
    return 1
  }
  out=$(chroot "$ROOTFS" "$interp" --list "$ENTRYPOINT_PATH") || return 1
  printf '%s\n' "$out"
  if grep -q 'not found' <<<"$out"; then return 1; fi
  echo "every library resolved in the base: $(awk '{print $1}' <<<"$out" | grep -v "^$interp$" | paste -sd' ')"
}
relay_runs_in_base() {
  chroot --userspec=65532:65532 "$ROOTFS" "$ENTRYPOINT_PATH" --version
}
audit_data() {
  rust-audit-info "$ROOTFS$ENTRYPOINT_PATH" >"$WORK/audit.json" || return 1
  local n
  n=$(jq '.packages | length' "$WORK/audit.json")
  jq -e '[.packages[].name] | (index("bp-relay") and index("rdkafka") and index("hyper"))' "$WORK/audit.json" >/dev/null || {
    echo "the audit data lacks bp-relay, rdkafka or hyper"
    return 1
  }
  echo "cargo auditable data: $n packages (bp-relay, rdkafka $(jq -r '.packages[] | select(.name == "rdkafka") | .version' "$WORK/audit.json"), hyper, ...)"
}
size() {
  local compressed uncompressed base_mb
  compressed=$(jq '[.layers[].size] | add' "$MANIFEST")
  uncompressed=$(du -sb "$ROOTFS" | cut -f1)
  base_mb=$(jq -r '.layers[0].size / 1048576 * 10 | floor / 10' "$MANIFEST")
  echo "layers: $(jq -r '[.layers[].size / 1048576 * 10 | floor / 10 | tostring + " MB"] | join(" + ")' "$MANIFEST") compressed (base $base_mb MB); unpacked $((uncompressed / 1048576)) MB"
  ((compressed <= MAX_IMAGE_MB * 1048576)) || {
    echo "larger than $MAX_IMAGE_MB MB"
    return 1
  }
  echo "$((compressed / 1048576)) MB compressed (bound $MAX_IMAGE_MB MB), $((uncompressed / 1048576)) MB unpacked"
}

check "config = deploy/Dockerfile" config_matches_dockerfile
check "no shell, no package manager" no_shell_no_package_manager
check "libraries (ldd) satisfied by the base" libraries_resolved
check "relay runs in the base as 65532" relay_runs_in_base
check "cargo auditable data readable" audit_data
check "size" size
say "$PASSED passed, $FAILED failed, ${OUT#"$ROOT"/}:$TAG in $((SECONDS - START))s"
((FAILED == 0))
