#!/usr/bin/env bash
# Build (quietly, cached) and run the bp-relay record-contract check against a topic.
#
#   tests/java-consumer/run.sh BOOTSTRAP TOPIC N [extra ContractCheck args...]
#
# e.g. run.sh 127.0.0.1:29092 authvia.business-processes 5 --type business_processes.update
#      run.sh 127.0.0.1:29092 authvia.webhooks.dead-letter 2 --dead-letter --timeout-seconds 20
#
# Prints ContractCheck's one-line JSON summary on stdout. Exit code: ContractCheck's own
# (0 exactly N valid records, 1 otherwise, 2 usage error), or 3 when the build failed.
#
# The build (mvn compile + dependency:copy-dependencies into target/) runs only when target/ is
# missing or older than pom.xml / the sources; it tries Maven offline first (the local
# repository is enough after the first build) and goes online only if that fails. Concurrent
# callers (parallel tests) serialize on a lock while building. Environment:
#   JAVA            java binary (default: java on PATH; needs 17+)
#   MVN             mvn binary (default: mvn on PATH)
#   MVN_ARGS        extra Maven arguments (e.g. -Dmaven.repo.local=/some/cache)
#   CONTRACT_CHECK_JAVA_OPTS  extra JVM options for the check
set -euo pipefail

if [ "$#" -lt 3 ]; then
  echo "usage: $(basename "$0") BOOTSTRAP TOPIC N [extra ContractCheck args...]" >&2
  exit 2
fi
bootstrap=$1 topic=$2 expect=$3
shift 3

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
JAVA=${JAVA:-java}
MVN=${MVN:-mvn}
target="$here/target"
stamp="$target/.bp-relay-build-stamp"
# shellcheck disable=SC2206 # word splitting intended
mvn_extra=(${MVN_ARGS:-})

needs_build() {
  [ -f "$stamp" ] || return 0
  [ -d "$target/classes" ] && [ -d "$target/dependency" ] || return 0
  [ -n "$(find "$here/pom.xml" "$here/src" -newer "$stamp" -print -quit 2>/dev/null)" ]
}

build() {
  local log="$target/build.log"
  mkdir -p "$target"
  # Offline first: no network needed once the local Maven repository has everything.
  if (cd "$here" && "$MVN" -q -B -o "${mvn_extra[@]}" compile dependency:copy-dependencies) >"$log" 2>&1; then
    touch "$stamp"
    return 0
  fi
  if (cd "$here" && "$MVN" -q -B "${mvn_extra[@]}" compile dependency:copy-dependencies) >"$log" 2>&1; then
    touch "$stamp"
    return 0
  fi
  echo "run.sh: build of $here failed; Maven output:" >&2
  cat "$log" >&2
  return 1
}

if needs_build; then
  mkdir -p "$target"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$target/.build.lock"
    flock 9
    if needs_build; then build || exit 3; fi
    flock -u 9
    exec 9>&-
  else
    build || exit 3
  fi
fi

# Fast JVM start for a short-lived check; the consumer does little work.
# shellcheck disable=SC2206 # word splitting intended
jopts=(-XX:TieredStopAtLevel=1 -XX:+UseSerialGC ${CONTRACT_CHECK_JAVA_OPTS:-})
set +e
"$JAVA" "${jopts[@]}" -cp "$target/classes:$target/dependency/*" dev.bprelay.consumer.ContractCheck \
  --bootstrap "$bootstrap" --topic "$topic" --expect "$expect" "$@"
rc=$?
set -e
exit "$rc"
