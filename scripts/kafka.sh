#!/usr/bin/env bash
# A real, single-node Apache Kafka broker for bp-relay's tests and local runs.
#
# KRaft combined mode (one JVM is both broker and controller, no ZooKeeper), assembled from the
# Kafka jars on Maven Central: no tarball download, no Docker. Needs Java 17+ and Maven.
#
#   scripts/kafka.sh install
#   scripts/kafka.sh start  [--port P] [--controller-port C] [--data-dir D]
#   scripts/kafka.sh stop   [--port P | --data-dir D] [--kill]
#   scripts/kafka.sh status [--port P | --data-dir D]
#   scripts/kafka.sh logs   [--port P | --data-dir D] [-n LINES]
#   scripts/kafka.sh topics [--port P] list | create NAME [PARTITIONS] | delete NAME
#
# Run with no arguments (or `help`) for the details.
set -euo pipefail

# --- Settings ---------------------------------------------------------------------------------

# Pinned Kafka release: 4.1.1, a patch release of the 4.1 line (KRaft only). Its broker
# (kafka_2.13), tools and their dependencies all resolve from Maven Central. 4.4.0 was also tried
# with this script and works: BP_RELAY_KAFKA_VERSION=4.4.0 (it gets its own cache dir).
KAFKA_VERSION="${BP_RELAY_KAFKA_VERSION:-4.1.1}"
# Kafka 4.1 logs through slf4j 1.7 -> this log4j2 binding (log4j-slf4j-impl, the slf4j 1.x one).
LOG4J_VERSION="2.24.3"
DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

CACHE_DIR="${BP_RELAY_CACHE:-${HOME:-/tmp}/.cache/bp-relay}"
KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
LIBS_DIR="$KAFKA_HOME/libs"
MARKER="$LIBS_DIR/.installed" # holds the pom the libs came from; a different pom reinstalls
RUN_DIR="$CACHE_DIR/run"      # port-<P> files: which data dir the broker on port P uses

# Any valid base64 UUID works; a fixed one keeps restarts on the same data dir trivially valid.
CLUSTER_ID="YnAtcmVsYXkta2Fma2EwMQ"
START_TIMEOUT_S=90
STOP_TIMEOUT_S=30

# Startup-oriented JVM flags: C1 only and the serial GC start markedly faster than the defaults on
# a 2-core box, and a test broker needs little throughput. Extra flags: BP_RELAY_KAFKA_JVM_OPTS.
JVM_FLAGS=(-Xms128m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError
  -Djava.awt.headless=true)
# shellcheck disable=SC2206 # word splitting is intended for the extra options
JVM_FLAGS+=(${BP_RELAY_KAFKA_JVM_OPTS:-})
# Application class-data sharing: the first broker that stops cleanly leaves an archive of the
# classes it loaded, and later starts map it instead of loading ~4000 classes from jars (about
# 1.5 s, or a third, less per start here). A stale or foreign archive is ignored by the JVM.
# BP_RELAY_KAFKA_CDS=0 turns this off.
CDS="${BP_RELAY_KAFKA_CDS:-1}"

# --- Helpers ----------------------------------------------------------------------------------

usage() {
  cat <<EOF
Usage: $(basename "$0") COMMAND [OPTIONS]

A single-node Apache Kafka $KAFKA_VERSION broker (KRaft, broker+controller in one JVM) built from
Maven Central jars. Needs java (17+) and mvn on PATH.

Commands:
  install              Fetch the Kafka jars into $LIBS_DIR (once; later runs do nothing).
  start [OPTIONS]      Write the config, format storage if new, start the broker in the
                       background and wait (max ${START_TIMEOUT_S}s) until it answers admin requests.
                       A broker already running from the same data dir is left as it is.
      --port P             client listener port (default 9092)
      --controller-port C  KRaft controller port (default P+1)
      --data-dir D         config, data, kafka.log, kafka.pid
                           (default \${TMPDIR:-/tmp}/bp-relay-kafka-P)
  stop [OPTIONS]       SIGTERM, wait max ${STOP_TIMEOUT_S}s, then SIGKILL. Data is kept. Idempotent.
      --port P | --data-dir D   which broker (default port 9092)
      --kill               SIGKILL at once (simulates a crash)
  status [OPTIONS]     Exit 0 if the broker is running and answers, 1 otherwise.
      --port P | --data-dir D
  logs [OPTIONS]       Print the end of the broker's kafka.log.
      --port P | --data-dir D
      -n LINES             how many lines (default 50)
  topics [--port P] list
  topics [--port P] create NAME [PARTITIONS]   (default partitions: 3, replication factor 1)
  topics [--port P] delete NAME
  help                 This message.

Environment:
  BP_RELAY_CACHE            cache root (default \$HOME/.cache/bp-relay)
  BP_RELAY_KAFKA_VERSION    Kafka version (default 4.1.1)
  BP_RELAY_KAFKA_JVM_OPTS   extra JVM options for the broker
  BP_RELAY_KAFKA_CDS=0      no class-data sharing archive (see the script)
  BP_RELAY_KAFKA_PROBE=java readiness probe through the Java AdminClient even if kcat is installed
EOF
}

log() { printf '[kafka.sh] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH (needed: $2)"; }

default_data_dir() { printf '%s/bp-relay-kafka-%s' "${TMPDIR:-/tmp}" "$1"; }

now_ms() { date +%s%3N; }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# True while process $1 exists and is not just a zombie waiting to be reaped (an orphaned broker
# may be). A JVM's main thread can turn zombie while its other threads still run and hold the
# sockets, so a zombie with more than one thread left still counts as alive.
alive() {
  local state tasks
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" ]] || return 1
  [[ "$state" != Z ]] && return 0
  tasks=("/proc/$1/task"/*)
  ((${#tasks[@]} > 1))
}

# True when pid $1 is alive and is the broker started from data dir $2 (guards against pid reuse).
is_broker_pid() {
  local pid="$1" dir="$2" cmdline
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"kafka.Kafka $dir/server.properties"* ]]
}

# The pid of the broker running from data dir $1, or nothing.
running_pid() {
  local dir="$1" pid
  [[ -f "$dir/kafka.pid" ]] || return 0
  pid="$(cat "$dir/kafka.pid" 2>/dev/null || true)"
  if is_broker_pid "$pid" "$dir"; then printf '%s' "$pid"; fi
}

# java with the Kafka jars; tool output at WARN and above only.
kafka_java() {
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_HOME/tools-log4j2.properties" \
    -cp "$LIBS_DIR/*" "$@"
}

# One metadata round-trip. A KRaft broker opens its client port and serves requests only once it
# has caught up with the metadata log and is unfenced, so success means ready for produce, consume
# and topic creation. kcat answers in milliseconds where installed (CI installs it); otherwise the
# AdminClient of the installed jars does the same in a JVM (~1-2 s).
admin_ok() {
  local port="$1"
  if [[ "${BP_RELAY_KAFKA_PROBE:-auto}" != java ]] && command -v kcat >/dev/null 2>&1; then
    timeout 10 kcat -b "127.0.0.1:$port" -L -m 5 >/dev/null 2>&1
    return
  fi
  timeout 20 java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_HOME/tools-log4j2.properties" -cp "$LIBS_DIR/*" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --list \
    --command-config "$KAFKA_HOME/admin-probe.properties" >/dev/null 2>&1
}

# Where the class-data archive for this Kafka version and this JVM lives.
cds_archive() {
  local jvm
  jvm="$(java -version 2>&1 | cksum | cut -d' ' -f1)"
  printf '%s/broker-cds-%s.jsa' "$KAFKA_HOME" "$jvm"
}

# After a clean exit, move the class-data archive the broker wrote at exit into the cache.
promote_cds_archive() {
  local dir="$1" archive tmp
  [[ -s "$dir/broker.jsa" ]] || return 0
  archive="$(cds_archive)"
  if [[ ! -f "$archive" ]]; then
    tmp="$KAFKA_HOME/.broker-cds.$$.tmp"
    # mv across file systems copies; the final rename within the cache dir is atomic.
    mv "$dir/broker.jsa" "$tmp" && mv -f "$tmp" "$archive" &&
      log "saved class-data archive $archive (faster starts from now on)"
  fi
  rm -f "$dir/broker.jsa"
}

log_tail() {
  local file="$1"
  [[ -f "$file" ]] || return 0
  printf '%s\n' "----- last 50 lines of $file -----" >&2
  tail -n 50 "$file" >&2
  printf '%s\n' "----- end of $file -----" >&2
}

# --- install ----------------------------------------------------------------------------------

write_pom() {
  cat <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by scripts/kafka.sh: the jars of a Kafka $KAFKA_VERSION broker plus its tools. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>bp-relay.local</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <!-- The broker: kafka.Kafka, kafka.tools.StorageTool. -->
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <!-- Admin tools (TopicCommand). Kafka Connect is not needed: leave its runtime out. -->
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
      <exclusions>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion>
      </exclusions>
    </dependency>
    <!-- Logging: slf4j 1.7 (what Kafka 4.1 uses) to log4j2. -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
}

# Files shared by every broker and tool run of this Kafka version (written once).
write_shared_configs() {
  [[ -f "$KAFKA_HOME/admin-probe.properties" ]] && return 0
  cat >"$KAFKA_HOME/tools-log4j2.properties" <<'EOF'
# Admin tools run by scripts/kafka.sh: warnings and errors only, to stderr.
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = STDERR
EOF
  cat >"$KAFKA_HOME/admin-probe.properties" <<'EOF'
# AdminClient settings for the readiness probe: fail fast, the caller retries.
request.timeout.ms=3000
default.api.timeout.ms=5000
socket.connection.setup.timeout.ms=1000
socket.connection.setup.timeout.max.ms=2000
EOF
}

cmd_install() {
  [[ $# -eq 0 || "$1" == "--quiet" ]] || die "install takes no arguments"
  local pom
  pom="$(write_pom)"
  if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$pom" ]]; then
    write_shared_configs
    [[ "${1:-}" == "--quiet" ]] || log "Kafka $KAFKA_VERSION already installed"
    printf '%s\n' "$LIBS_DIR"
    return 0
  fi

  need java "to run Kafka"
  need mvn "to fetch the Kafka jars"
  mkdir -p "$KAFKA_HOME"
  # Serialise concurrent installs (e.g. two test processes starting brokers on a cold cache).
  exec 9>"$KAFKA_HOME/.install.lock"
  flock 9
  if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$pom" ]]; then
    write_shared_configs
    exec 9>&-
    printf '%s\n' "$LIBS_DIR"
    return 0
  fi

  log "installing Kafka $KAFKA_VERSION jars into $LIBS_DIR"
  local work="$KAFKA_HOME/.install-work"
  rm -rf "$work"
  mkdir -p "$work"
  printf '%s\n' "$pom" >"$work/pom.xml"
  # Maven's output goes to stderr, minus the colour codes it prints even in batch mode.
  if ! mvn -B -q -f "$work/pom.xml" "$DEPENDENCY_PLUGIN:copy-dependencies" \
    -DincludeScope=runtime -DoutputDirectory="$work/libs" </dev/null 2>&1 |
    sed 's/\x1b\[[0-9;]*m//g' >&2; then
    exec 9>&-
    die "maven could not fetch the Kafka $KAFKA_VERSION jars (see above)"
  fi
  printf '%s\n' "$pom" >"$work/libs/.installed"
  rm -rf "$LIBS_DIR"
  mv "$work/libs" "$LIBS_DIR"
  rm -rf "$work"
  write_shared_configs
  exec 9>&-
  log "installed $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars"
  printf '%s\n' "$LIBS_DIR"
}

# --- start ------------------------------------------------------------------------------------

write_broker_configs() {
  local dir="$1" port="$2" cport="$3"
  cat >"$dir/server.properties" <<EOF
# Written by scripts/kafka.sh on every start: a single-node KRaft test broker.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$dir/data

# Tests rely on unknown topics staying unknown.
auto.create.topics.enable=false
num.partitions=3
default.replication.factor=1
min.insync.replicas=1

# Internal topics on one node: replication factor 1, few partitions (quick to create).
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=3

# Fast startup and consumer-group joins. After a crash (stop --kill) the restarted node must wait
# for the old registration's session to expire (DuplicateBrokerRegistrationException until then):
# 3 s instead of the default 9 s, with heartbeats every 0.5 s instead of 2 s.
group.initial.rebalance.delay.ms=0
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
EOF
  cat >"$dir/log4j2.properties" <<'EOF'
# Broker logging (scripts/kafka.sh): INFO to stdout, which start redirects to kafka.log.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.state.name = state.change.logger
logger.state.level = warn
# The full config dump (hundreds of lines) on every start buries what matters in the log tail.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = warn
EOF
}

cmd_start() {
  local port=9092 cport="" dir=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --port) port="${2:?--port needs a value}"; shift 2 ;;
      --controller-port) cport="${2:?--controller-port needs a value}"; shift 2 ;;
      --data-dir) dir="${2:?--data-dir needs a value}"; shift 2 ;;
      *) die "start: unknown option '$1' (see '$0 help')" ;;
    esac
  done
  [[ "$port" =~ ^[0-9]+$ ]] || die "--port must be a number, got '$port'"
  [[ -n "$cport" ]] || cport=$((port + 1))
  [[ "$cport" =~ ^[0-9]+$ ]] || die "--controller-port must be a number, got '$cport'"
  [[ -n "$dir" ]] || dir="$(default_data_dir "$port")"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd -P)"

  cmd_install --quiet >/dev/null

  local pid
  pid="$(running_pid "$dir")"
  if [[ -n "$pid" ]]; then
    if ! grep -qx "advertised.listeners=PLAINTEXT://127.0.0.1:$port" "$dir/server.properties"; then
      die "the broker of $dir (pid $pid) runs on another port than $port; stop it first"
    fi
    if port_open "$port" && admin_ok "$port"; then
      log "broker already running and healthy (pid $pid, 127.0.0.1:$port, $dir)"
      return 0
    fi
    log "broker pid $pid is running but not answering on $port yet; waiting for it"
    wait_ready "$pid" "$port" "$dir" "$(now_ms)"
    return 0
  fi
  rm -f "$dir/kafka.pid"

  # A broker that was just stopped may take a moment to let go of its ports.
  local p i
  for p in "$port" "$cport"; do
    for ((i = 0; i < 25; i++)); do
      port_open "$p" || continue 2
      sleep 0.2
    done
    die "port $p is already in use by another process (not the broker of $dir)"
  done

  write_broker_configs "$dir" "$port" "$cport"
  local t0
  t0="$(now_ms)"
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    log "formatting new storage in $dir/data (cluster id $CLUSTER_ID)"
    if ! kafka_java kafka.tools.StorageTool format --config "$dir/server.properties" \
      --cluster-id "$CLUSTER_ID" --ignore-formatted >"$dir/format.log" 2>&1; then
      cat "$dir/format.log" >&2
      die "formatting $dir/data failed"
    fi
  fi

  local cds_flags=()
  rm -f "$dir/broker.jsa"
  if [[ "$CDS" != 0 ]]; then
    local archive
    archive="$(cds_archive)"
    if [[ -f "$archive" ]]; then
      cds_flags=(-XX:SharedArchiveFile="$archive")
    else
      cds_flags=(-XX:ArchiveClassesAtExit="$dir/broker.jsa") # promoted by a clean stop
    fi
    cds_flags+=(-Xlog:cds*=error) # the dump warns about every class it skips
  fi

  printf '\n===== scripts/kafka.sh start %s (port %s) =====\n' "$(date -Is)" "$port" >>"$dir/kafka.log"
  # setsid: the broker outlives the shell that started it and ignores its terminal's Ctrl-C.
  # stdin/stdout/stderr are detached so a caller reading our output is not kept waiting.
  setsid java "${JVM_FLAGS[@]}" "${cds_flags[@]}" \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    -cp "$LIBS_DIR/*" kafka.Kafka "$dir/server.properties" \
    </dev/null >>"$dir/kafka.log" 2>&1 9>&- &
  pid=$!
  printf '%s\n' "$pid" >"$dir/kafka.pid"
  mkdir -p "$RUN_DIR"
  printf '%s\n' "$dir" >"$RUN_DIR/port-$port"
  log "started broker pid $pid on 127.0.0.1:$port (controller $cport), data in $dir"
  wait_ready "$pid" "$port" "$dir" "$t0"
}

# Poll until the broker answers an admin request; on failure show the log and exit 1 (a broker
# that is still starting after the deadline is killed, so the next start begins afresh).
wait_ready() {
  local pid="$1" port="$2" dir="$3" t0="$4"
  local deadline=$(($(date +%s) + START_TIMEOUT_S))
  while (($(date +%s) < deadline)); do
    if ! alive "$pid"; then
      log "broker pid $pid exited during startup"
      log_tail "$dir/kafka.log"
      rm -f "$dir/kafka.pid"
      exit 1
    fi
    # Cheap checks first (TCP), one JVM-based admin round-trip only once the port is open.
    if port_open "$port" && admin_ok "$port"; then
      log "broker ready on 127.0.0.1:$port after $(($(now_ms) - t0)) ms"
      return 0
    fi
    sleep 0.2
  done
  log "broker on port $port not ready after ${START_TIMEOUT_S}s; killing it (log kept)"
  log_tail "$dir/kafka.log"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$dir/kafka.pid" "$dir/broker.jsa"
  exit 1
}

# --- stop / status ----------------------------------------------------------------------------

# Resolve --port/--data-dir to a data dir; prints it.
resolve_dir() {
  local port="$1" dir="$2"
  if [[ -n "$dir" ]]; then
    [[ -d "$dir" ]] && dir="$(cd "$dir" && pwd -P)"
    printf '%s' "$dir"
  elif [[ -f "$RUN_DIR/port-$port" ]]; then
    cat "$RUN_DIR/port-$port"
  else
    default_data_dir "$port"
  fi
}

cmd_stop() {
  local port=9092 dir="" kill_now=0
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --port) port="${2:?--port needs a value}"; shift 2 ;;
      --data-dir) dir="${2:?--data-dir needs a value}"; shift 2 ;;
      --kill) kill_now=1; shift ;;
      *) die "stop: unknown option '$1' (see '$0 help')" ;;
    esac
  done
  dir="$(resolve_dir "$port" "$dir")"
  local pid
  pid="$(running_pid "$dir")"
  if [[ -z "$pid" ]]; then
    rm -f "$dir/kafka.pid"
    log "no broker running from $dir"
    return 0
  fi

  local t0 clean=0
  t0="$(now_ms)"
  if ((kill_now)); then
    log "killing broker pid $pid (SIGKILL)"
    kill -KILL "$pid" 2>/dev/null || true
  else
    log "stopping broker pid $pid (SIGTERM)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$(($(date +%s) + STOP_TIMEOUT_S))
    while alive "$pid" && (($(date +%s) < deadline)); do sleep 0.2; done
    if alive "$pid"; then
      log "broker pid $pid still running after ${STOP_TIMEOUT_S}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    else
      clean=1
    fi
  fi
  # Wait until the process is really gone, so the ports and the log dir lock are free.
  local i
  for ((i = 0; i < 100; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  alive "$pid" && die "broker pid $pid did not exit"
  rm -f "$dir/kafka.pid"
  if ((clean)); then promote_cds_archive "$dir"; else rm -f "$dir/broker.jsa"; fi
  log "broker stopped after $(($(now_ms) - t0)) ms (data kept in $dir)"
}

cmd_status() {
  local port="" dir=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --port) port="${2:?--port needs a value}"; shift 2 ;;
      --data-dir) dir="${2:?--data-dir needs a value}"; shift 2 ;;
      *) die "status: unknown option '$1' (see '$0 help')" ;;
    esac
  done
  dir="$(resolve_dir "${port:-9092}" "$dir")"
  if [[ -z "$port" ]]; then
    port="$(sed -n 's#^advertised.listeners=PLAINTEXT://127.0.0.1:##p' "$dir/server.properties" 2>/dev/null || true)"
    port="${port:-9092}"
  fi
  local pid
  pid="$(running_pid "$dir")"
  if [[ -z "$pid" ]]; then
    log "not running ($dir)"
    return 1
  fi
  if port_open "$port" && admin_ok "$port"; then
    log "running and healthy: pid $pid, 127.0.0.1:$port, $dir"
    return 0
  fi
  log "running but not answering: pid $pid, 127.0.0.1:$port, $dir"
  return 1
}

cmd_logs() {
  local port=9092 dir="" lines=50
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --port) port="${2:?--port needs a value}"; shift 2 ;;
      --data-dir) dir="${2:?--data-dir needs a value}"; shift 2 ;;
      -n) lines="${2:?-n needs a value}"; shift 2 ;;
      *) die "logs: unknown option '$1' (see '$0 help')" ;;
    esac
  done
  dir="$(resolve_dir "$port" "$dir")"
  [[ -f "$dir/kafka.log" ]] || die "no broker log at $dir/kafka.log"
  tail -n "$lines" "$dir/kafka.log"
}

# --- topics -----------------------------------------------------------------------------------

cmd_topics() {
  local port=9092
  if [[ "${1:-}" == "--port" ]]; then
    port="${2:?--port needs a value}"
    shift 2
  fi
  [[ -f "$MARKER" ]] || die "Kafka is not installed; run '$0 install' (or start) first"
  local bootstrap="127.0.0.1:$port"
  case "${1:-}" in
    list)
      kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" --list
      ;;
    create)
      local name="${2:?topics create needs NAME}" partitions="${3:-3}"
      kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" --create \
        --if-not-exists --topic "$name" --partitions "$partitions" --replication-factor 1
      ;;
    delete)
      local name="${2:?topics delete needs NAME}"
      kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" --delete \
        --if-exists --topic "$name"
      ;;
    *) die "topics: expected list | create NAME [PARTITIONS] | delete NAME (see '$0 help')" ;;
  esac
}

# --- main -------------------------------------------------------------------------------------

main() {
  local cmd="${1:-help}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    install) cmd_install "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    logs) cmd_logs "$@" ;;
    topics) cmd_topics "$@" ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
