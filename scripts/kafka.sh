#!/usr/bin/env bash
# A real, single-node Apache Kafka broker for bp-relay's tests and local runs, and a multi-node
# cluster of them for the fault tests (tests/faults).
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
#   scripts/kafka.sh cluster start [--nodes N] [--base-port P] [--data-dir D] [--advertise I=H:P]
#   scripts/kafka.sh cluster stop|status --data-dir D
#   scripts/kafka.sh node start|stop|kill|pause|resume|pid --data-dir D --node I
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
# The heap is separate so a cluster node can take less (three JVMs on a small box).
JVM_HEAP=(-Xms128m -Xmx512m)
JVM_FLAGS=(-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError
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
      --sasl-ssl-port S    also a SASL_SSL listener on S: TLS with a test CA and a certificate
                           for 127.0.0.1/localhost made in D/tls (clients trust D/tls/ca.pem),
                           users relay-plain (PLAIN) and relay-scram (SCRAM-SHA-512, set when
                           the storage is formatted), both with the password in
      --sasl-password-file F
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

Multi-node cluster (for fault tests): N nodes, each broker+controller in its own JVM
(-Xmx384m), all voters of one KRaft quorum. Node I (0..N-1, node.id I) listens on 127.0.0.1,
ports: client P+3I, controller P+3I+1, replication (inter-broker) P+3I+2. Topics default to 6
partitions and, with 3+ nodes, replication factor 3 and min.insync.replicas 2 (internal topics
too); unclean leader election off; leadership rebalanced every 5 s. D holds cluster.conf and
node-I/ (a broker data dir each: 'logs --data-dir D/node-I' shows one node's log).
  cluster start [OPTIONS]   Start every node not running (a paused one is resumed) and wait (max
                       ${START_TIMEOUT_S}s) until each answers and knows all N brokers.
      --nodes N            (default 3)
      --base-port P        (default $CLUSTER_DEFAULT_PORT)
      --data-dir D         (default \${TMPDIR:-/tmp}/bp-relay-kafka-cluster-P)
      --advertise I=HOST:PORT   node I advertises HOST:PORT to clients instead of its client
                           port, e.g. a proxy in front of it (repeatable; kept for 'node start')
  cluster stop --data-dir D [--kill]   Stop every node at once (as 'stop' does). Data is kept.
  cluster status --data-dir D          One line per node; exit 0 if every node is ready.
  node ACTION --data-dir D --node I    One node:
      start                restart it on its data (or resume it) and wait until it is ready
      stop                 SIGTERM and wait (SIGKILL after ${STOP_TIMEOUT_S}s)
      kill                 SIGKILL at once (a crash)
      pause | resume       SIGSTOP (alive, answers nothing) | SIGCONT
      pid                  print its pid (nothing if it is not running)

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
  write_broker_log4j "$dir"
}

# A test CA and a broker certificate for 127.0.0.1 and localhost, made once per data dir: the
# broker reads them as PEM (its key and chain in broker.pem); clients trust ca.pem.
make_tls_material() {
  local tls="$1/tls"
  [[ -f "$tls/broker.pem" && -f "$tls/ca.pem" ]] && return 0
  command -v openssl >/dev/null || die "openssl is needed for --sasl-ssl-port"
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=bp-relay test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$tls/broker.key" -out "$tls/broker.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tls/san.ext"
  openssl x509 -req -in "$tls/broker.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 30 -extfile "$tls/san.ext" -out "$tls/broker.crt" 2>/dev/null
  # Kafka's PEM key store: an unencrypted PKCS#8 key, then the certificate chain.
  openssl pkcs8 -topk8 -nocrypt -in "$tls/broker.key" >"$tls/broker.pem"
  cat "$tls/broker.crt" "$tls/ca.pem" >>"$tls/broker.pem"
  chmod 600 "$tls"/*.key "$tls/broker.pem"
}

# Adds a SASL_SSL listener on $3 to the broker config of data dir $1 (client port $2), with the
# PLAIN user relay-plain and SCRAM-SHA-512 enabled, both with password $4.
add_sasl_ssl_listener() {
  local dir="$1" port="$2" sport="$3" password="$4"
  make_tls_material "$dir"
  sed -i \
    -e "s#^listeners=PLAINTEXT://127.0.0.1:$port,#listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sport,#" \
    -e "s#^advertised.listeners=PLAINTEXT://127.0.0.1:$port\$#advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sport#" \
    -e "s#^listener.security.protocol.map=PLAINTEXT:PLAINTEXT,#listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,#" \
    "$dir/server.properties"
  {
    printf '\n# SASL_SSL listener (--sasl-ssl-port): PLAIN and SCRAM-SHA-512 over TLS.\n'
    printf 'sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512\n'
    printf 'listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_relay-plain="%s";\n' "$password"
    printf 'listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n'
    printf 'ssl.keystore.type=PEM\n'
    printf 'ssl.keystore.location=%s/tls/broker.pem\n' "$dir"
  } >>"$dir/server.properties"
  chmod 600 "$dir/server.properties"
}

# Broker logging, the same for the single node and every cluster node.
write_broker_log4j() {
  cat >"$1/log4j2.properties" <<'EOF'
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

# Formats the storage of a new data dir (a restart keeps its data and skips this).
# Further arguments go to the storage tool (e.g. --add-scram for SCRAM users).
format_storage() {
  local dir="$1"
  shift
  [[ -f "$dir/data/meta.properties" ]] && return 0
  log "formatting new storage in $dir/data (cluster id $CLUSTER_ID)"
  if ! kafka_java kafka.tools.StorageTool format --config "$dir/server.properties" \
    --cluster-id "$CLUSTER_ID" --ignore-formatted "$@" >"$dir/format.log" 2>&1; then
    cat "$dir/format.log" >&2
    die "formatting $dir/data failed"
  fi
}

# Starts the broker of data dir $1 in the background (no waiting); its pid goes to kafka.pid and
# to LAUNCHED_PID (a global: in a command substitution the caller would wait for the broker).
# $2 names it in kafka.log's start banner.
LAUNCHED_PID=""
launch_broker() {
  local dir="$1" what="$2"
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
    cds_flags+=("-Xlog:cds*=error") # the dump warns about every class it skips (quoted: no glob)
  fi

  printf '\n===== scripts/kafka.sh start %s (%s) =====\n' "$(date -Is)" "$what" >>"$dir/kafka.log"
  # setsid: the broker outlives the shell that started it and ignores its terminal's Ctrl-C.
  # stdin/stdout/stderr are detached so a caller reading our output is not kept waiting.
  setsid java "${JVM_HEAP[@]}" "${JVM_FLAGS[@]}" "${cds_flags[@]}" \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    -cp "$LIBS_DIR/*" kafka.Kafka "$dir/server.properties" \
    </dev/null >>"$dir/kafka.log" 2>&1 9>&- &
  LAUNCHED_PID=$!
  printf '%s\n' "$LAUNCHED_PID" >"$dir/kafka.pid"
}

cmd_start() {
  local port=9092 cport="" dir="" sasl_port="" sasl_password_file=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --port) port="${2:?--port needs a value}"; shift 2 ;;
      --controller-port) cport="${2:?--controller-port needs a value}"; shift 2 ;;
      --data-dir) dir="${2:?--data-dir needs a value}"; shift 2 ;;
      --sasl-ssl-port) sasl_port="${2:?--sasl-ssl-port needs a value}"; shift 2 ;;
      --sasl-password-file) sasl_password_file="${2:?--sasl-password-file needs a value}"; shift 2 ;;
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
  local format_args=()
  if [[ -n "$sasl_port" ]]; then
    [[ "$sasl_port" =~ ^[0-9]+$ ]] || die "--sasl-ssl-port must be a number, got '$sasl_port'"
    [[ -r "$sasl_password_file" ]] || die "--sasl-ssl-port needs a readable --sasl-password-file"
    local password
    password="$(<"$sasl_password_file")"
    add_sasl_ssl_listener "$dir" "$port" "$sasl_port" "$password"
    format_args=(--add-scram "SCRAM-SHA-512=[name=relay-scram,password=$password]")
  fi
  local t0
  t0="$(now_ms)"
  format_storage "$dir" "${format_args[@]}"
  launch_broker "$dir" "port $port"
  pid="$LAUNCHED_PID"
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

# --- cluster ----------------------------------------------------------------------------------
#
# N combined broker+controller nodes on this machine, for fault tests that stop, kill or pause
# one node while the others serve. Data dir D holds cluster.conf (the settings of `cluster
# start`, reused by `node start`) and node-I/ for each node I = 0..N-1 (node.id I): its
# server.properties, data/, kafka.log and kafka.pid, as a single broker's data dir has.
#
# Ports of node I from base port P: client P+3I, controller P+3I+1, replication P+3I+2.
# Replication has a listener of its own so that a proxy in front of one node's client port
# (--advertise) slows the clients' path to it, not its followers' fetches.

CLUSTER_DEFAULT_PORT=19192 # clear of the test broker (9092-9093) and the bench broker (19092-19093)
CLUSTER_HEAP=(-Xms96m -Xmx384m) # three JVMs and their tools share a small box
CLUSTER_NODES=""
CLUSTER_BASE_PORT=""
declare -A CLUSTER_ADVERTISE=() # node -> host:port its client listener advertises

node_dir() { printf '%s/node-%s' "$1" "$2"; }
client_port() { printf '%s' $((CLUSTER_BASE_PORT + 3 * $1)); }
controller_port() { printf '%s' $((CLUSTER_BASE_PORT + 3 * $1 + 1)); }
replication_port() { printf '%s' $((CLUSTER_BASE_PORT + 3 * $1 + 2)); }

# Reads D/cluster.conf (key=value lines) into the CLUSTER_* globals.
load_cluster_conf() {
  local dir="$1" key value
  [[ -f "$dir/cluster.conf" ]] || die "no cluster in $dir (run 'cluster start' first)"
  CLUSTER_ADVERTISE=()
  while IFS='=' read -r key value; do
    case "$key" in
      nodes) CLUSTER_NODES="$value" ;;
      base_port) CLUSTER_BASE_PORT="$value" ;;
      advertise.*) CLUSTER_ADVERTISE[${key#advertise.}]="$value" ;;
    esac
  done <"$dir/cluster.conf"
}

save_cluster_conf() {
  local dir="$1" node
  {
    printf '# Written by scripts/kafka.sh cluster start; read by its node commands.\n'
    printf 'nodes=%s\nbase_port=%s\n' "$CLUSTER_NODES" "$CLUSTER_BASE_PORT"
    for node in "${!CLUSTER_ADVERTISE[@]}"; do
      printf 'advertise.%s=%s\n' "$node" "${CLUSTER_ADVERTISE[$node]}"
    done
  } >"$dir/cluster.conf"
}

# Replication settings for the cluster size: with three nodes or more, every record is on three
# replicas and acknowledged once two have it, so one node may fail without losing or refusing a
# write, and a second failure refuses writes instead of risking them.
cluster_replication_factor() { printf '%s' $((CLUSTER_NODES < 3 ? CLUSTER_NODES : 3)); }
cluster_min_isr() {
  local rf
  rf="$(cluster_replication_factor)"
  printf '%s' $((rf > 1 ? rf - 1 : 1))
}

write_cluster_node_config() {
  local dir="$1" node="$2" ndir voters="" i rf min_isr
  ndir="$(node_dir "$dir" "$node")"
  for ((i = 0; i < CLUSTER_NODES; i++)); do
    voters+="${voters:+,}$i@127.0.0.1:$(controller_port "$i")"
  done
  rf="$(cluster_replication_factor)"
  min_isr="$(cluster_min_isr)"
  mkdir -p "$ndir"
  cat >"$ndir/server.properties" <<EOF
# Written by scripts/kafka.sh on every start: node $node of a $CLUSTER_NODES-node KRaft cluster.
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=CLIENT://127.0.0.1:$(client_port "$node"),REPLICATION://127.0.0.1:$(replication_port "$node"),CONTROLLER://127.0.0.1:$(controller_port "$node")
advertised.listeners=CLIENT://${CLUSTER_ADVERTISE[$node]:-127.0.0.1:$(client_port "$node")},REPLICATION://127.0.0.1:$(replication_port "$node")
listener.security.protocol.map=CLIENT:PLAINTEXT,REPLICATION:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=REPLICATION
controller.listener.names=CONTROLLER
log.dirs=$ndir/data

# Tests rely on unknown topics staying unknown.
auto.create.topics.enable=false
num.partitions=6
default.replication.factor=$rf
min.insync.replicas=$min_isr
# Never elect a replica that may lack acknowledged records: losing them is what tests look for.
unclean.leader.election.enable=false
# Leadership returns to a restarted node within seconds (the default checks every 5 minutes), so
# one fault's aftermath does not skew the next scenario.
auto.leader.rebalance.enable=true
leader.imbalance.check.interval.seconds=5

# Internal topics as durable as the data.
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
share.coordinator.state.topic.num.partitions=3

# Fast startup, fast failure detection (as the single node: a killed node's registration expires
# after 3 s), few threads: three brokers share two cores.
group.initial.rebalance.delay.ms=0
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
background.threads=2
num.recovery.threads.per.data.dir=1
log.retention.hours=24
EOF
  write_broker_log4j "$ndir"
}

# How many brokers the node on client port $1 has in its metadata (registered and unfenced); empty
# if it does not answer.
registered_brokers() {
  local port="$1"
  if [[ "${BP_RELAY_KAFKA_PROBE:-auto}" != java ]] && command -v kcat >/dev/null 2>&1; then
    timeout 10 kcat -b "127.0.0.1:$port" -L -m 5 2>/dev/null | sed -n 's/^ \([0-9]*\) brokers:$/\1/p'
    return 0
  fi
  timeout 20 java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_HOME/tools-log4j2.properties" -cp "$LIBS_DIR/*" \
    org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "127.0.0.1:$port" \
    --command-config "$KAFKA_HOME/admin-probe.properties" 2>/dev/null | grep -c '(id: ' || true
}

# Ready: the node answers on its client port and knows all N brokers, itself included.
node_ready() {
  local node="$1" port
  port="$(client_port "$node")"
  port_open "$port" && [[ "$(registered_brokers "$port")" == "$CLUSTER_NODES" ]]
}

# Waits (max START_TIMEOUT_S) until every node listed after D and t0 is ready; a node that
# exits meanwhile, or the deadline, fails with its log's tail.
wait_nodes_ready() {
  local dir="$1" t0="$2" node pid
  shift 2
  local pending=("$@")
  local deadline=$(($(date +%s) + START_TIMEOUT_S))
  while ((${#pending[@]} > 0)); do
    local still=()
    for node in "${pending[@]}"; do
      pid="$(running_pid "$(node_dir "$dir" "$node")")"
      if [[ -z "$pid" ]]; then
        log "node $node exited during startup"
        log_tail "$(node_dir "$dir" "$node")/kafka.log"
        exit 1
      fi
      node_ready "$node" || still+=("$node")
    done
    pending=("${still[@]}")
    ((${#pending[@]} == 0)) && break
    if (($(date +%s) >= deadline)); then
      log "node(s) ${pending[*]} not ready after ${START_TIMEOUT_S}s (processes left running)"
      for node in "${pending[@]}"; do log_tail "$(node_dir "$dir" "$node")/kafka.log"; done
      exit 1
    fi
    sleep 0.3
  done
  log "node(s) $* of the $CLUSTER_NODES-node cluster ready after $(($(now_ms) - t0)) ms"
}

# True when process $1 is stopped by a signal (SIGSTOP): paused.
paused() { [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" == T ]]; }

# Launches node $2 of cluster $1 unless it runs already (a paused one is resumed). Does not wait.
launch_node() {
  local dir="$1" node="$2" ndir pid port
  ndir="$(node_dir "$dir" "$node")"
  pid="$(running_pid "$ndir")"
  if [[ -n "$pid" ]]; then
    if paused "$pid"; then
      log "node $node (pid $pid) is paused: resuming it"
      kill -CONT "$pid"
    fi
    return 0
  fi
  rm -f "$ndir/kafka.pid"
  # A node that was just stopped may take a moment to let go of its ports.
  local i
  for port in "$(client_port "$node")" "$(controller_port "$node")" "$(replication_port "$node")"; do
    for ((i = 0; i < 25; i++)); do
      port_open "$port" || continue 2
      sleep 0.2
    done
    die "port $port of node $node is already in use by another process"
  done
  write_cluster_node_config "$dir" "$node"
  format_storage "$ndir"
  local JVM_HEAP=("${CLUSTER_HEAP[@]}")
  launch_broker "$ndir" "node $node, port $(client_port "$node")"
  log "started node $node pid $LAUNCHED_PID on 127.0.0.1:$(client_port "$node")" \
    "(advertised as ${CLUSTER_ADVERTISE[$node]:-itself})"
}

cmd_cluster_start() {
  local nodes=3 base="$CLUSTER_DEFAULT_PORT" dir="" spec
  local -A advertise=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --nodes) nodes="${2:?--nodes needs a value}"; shift 2 ;;
      --base-port) base="${2:?--base-port needs a value}"; shift 2 ;;
      --data-dir) dir="${2:?--data-dir needs a value}"; shift 2 ;;
      --advertise)
        spec="${2:?--advertise needs NODE=HOST:PORT}"
        [[ "$spec" =~ ^([0-9]+)=([^=:]+:[0-9]+)$ ]] || die "--advertise wants NODE=HOST:PORT, got '$spec'"
        advertise[${BASH_REMATCH[1]}]="${BASH_REMATCH[2]}"
        shift 2
        ;;
      *) die "cluster start: unknown option '$1' (see '$0 help')" ;;
    esac
  done
  [[ "$nodes" =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive number, got '$nodes'"
  [[ "$base" =~ ^[0-9]+$ ]] || die "--base-port must be a number, got '$base'"
  [[ -n "$dir" ]] || dir="${TMPDIR:-/tmp}/bp-relay-kafka-cluster-$base"
  local node
  for node in "${!advertise[@]}"; do
    ((node < nodes)) || die "--advertise names node $node; nodes are 0..$((nodes - 1))"
  done
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd -P)"
  cmd_install --quiet >/dev/null

  if [[ -f "$dir/cluster.conf" ]]; then
    load_cluster_conf "$dir"
    if [[ "$CLUSTER_NODES" != "$nodes" || "$CLUSTER_BASE_PORT" != "$base" ]] && any_node_running "$dir"; then
      die "the cluster in $dir runs with $CLUSTER_NODES nodes from port $CLUSTER_BASE_PORT; stop it first"
    fi
  fi
  CLUSTER_NODES="$nodes"
  CLUSTER_BASE_PORT="$base"
  CLUSTER_ADVERTISE=()
  for node in "${!advertise[@]}"; do CLUSTER_ADVERTISE[$node]="${advertise[$node]}"; done
  save_cluster_conf "$dir"

  local t0 all=()
  t0="$(now_ms)"
  for ((node = 0; node < nodes; node++)); do
    launch_node "$dir" "$node"
    all+=("$node")
  done
  wait_nodes_ready "$dir" "$t0" "${all[@]}"
}

any_node_running() {
  local dir="$1" node
  for ((node = 0; node < CLUSTER_NODES; node++)); do
    [[ -n "$(running_pid "$(node_dir "$dir" "$node")")" ]] && return 0
  done
  return 1
}

cmd_cluster_stop() {
  local dir="" how=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --data-dir) dir="${2:?--data-dir needs a value}"; shift 2 ;;
      --kill) how=(--kill); shift ;;
      *) die "cluster stop: unknown option '$1' (see '$0 help')" ;;
    esac
  done
  [[ -n "$dir" ]] || die "cluster stop needs --data-dir"
  [[ -d "$dir" ]] || { log "no cluster in $dir"; return 0; }
  dir="$(cd "$dir" && pwd -P)"
  load_cluster_conf "$dir"
  # All at once: a node stopping alone would move its partitions' leadership to the others first.
  local node pid stoppers=() failed=0
  for ((node = 0; node < CLUSTER_NODES; node++)); do
    stop_node "$dir" "$node" "${how[@]}" &
    stoppers+=($!)
  done
  for pid in "${stoppers[@]}"; do wait "$pid" || failed=1; done
  ((!failed)) || die "not every node of $dir stopped"
}

# Stops node $2 of cluster $1 like `stop` stops a broker (SIGTERM and wait, or --kill). A paused
# node is resumed first: it could not act on SIGTERM.
stop_node() {
  local dir="$1" node="$2" ndir pid
  shift 2
  ndir="$(node_dir "$dir" "$node")"
  pid="$(running_pid "$ndir")"
  if [[ -n "$pid" ]] && paused "$pid" && [[ "${1:-}" != --kill ]]; then kill -CONT "$pid"; fi
  cmd_stop --data-dir "$ndir" "$@"
}

cmd_cluster_status() {
  local dir=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --data-dir) dir="${2:?--data-dir needs a value}"; shift 2 ;;
      *) die "cluster status: unknown option '$1' (see '$0 help')" ;;
    esac
  done
  [[ -n "$dir" ]] || die "cluster status needs --data-dir"
  load_cluster_conf "$dir"
  local node pid state healthy=1
  for ((node = 0; node < CLUSTER_NODES; node++)); do
    pid="$(running_pid "$(node_dir "$dir" "$node")")"
    if [[ -z "$pid" ]]; then
      state="stopped"
    elif paused "$pid"; then
      state="paused (pid $pid)"
    elif node_ready "$node"; then
      state="ready (pid $pid)"
    else
      state="running, not ready (pid $pid)"
    fi
    [[ "$state" == ready* ]] || healthy=0
    printf 'node %s: 127.0.0.1:%s advertised as %s: %s\n' "$node" "$(client_port "$node")" \
      "${CLUSTER_ADVERTISE[$node]:-itself}" "$state"
  done
  ((healthy))
}

cmd_cluster() {
  local sub="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$sub" in
    start) cmd_cluster_start "$@" ;;
    stop) cmd_cluster_stop "$@" ;;
    status) cmd_cluster_status "$@" ;;
    *) die "cluster: expected start | stop | status (see '$0 help')" ;;
  esac
}

# node ACTION --data-dir D --node I: one node's fault or its repair.
cmd_node() {
  local action="${1:-}" dir="" node=""
  [[ $# -gt 0 ]] && shift
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --data-dir) dir="${2:?--data-dir needs a value}"; shift 2 ;;
      --node) node="${2:?--node needs a value}"; shift 2 ;;
      *) die "node $action: unknown option '$1' (see '$0 help')" ;;
    esac
  done
  [[ -n "$dir" && -n "$node" ]] || die "node $action needs --data-dir D --node I"
  dir="$(cd "$dir" 2>/dev/null && pwd -P)" || die "no cluster data dir $dir"
  load_cluster_conf "$dir"
  if ! [[ "$node" =~ ^[0-9]+$ ]] || ((node >= CLUSTER_NODES)); then
    die "--node must be 0..$((CLUSTER_NODES - 1)), got '$node'"
  fi
  local ndir pid
  ndir="$(node_dir "$dir" "$node")"
  pid="$(running_pid "$ndir")"
  case "$action" in
    start)
      local t0
      t0="$(now_ms)"
      launch_node "$dir" "$node"
      wait_nodes_ready "$dir" "$t0" "$node"
      ;;
    stop) stop_node "$dir" "$node" ;;
    kill) stop_node "$dir" "$node" --kill ;;
    pause | resume)
      [[ -n "$pid" ]] || die "node $node is not running"
      local signal=STOP
      [[ "$action" == resume ]] && signal=CONT
      kill "-$signal" "$pid"
      # SIGSTOP takes effect asynchronously: return once the process is really stopped (or not).
      local i
      for ((i = 0; i < 50; i++)); do
        if [[ "$action" == pause ]] && paused "$pid"; then break; fi
        if [[ "$action" == resume ]] && ! paused "$pid"; then break; fi
        sleep 0.02
      done
      log "node $node (pid $pid): SIG$signal"
      ;;
    pid) [[ -n "$pid" ]] && printf '%s\n' "$pid" ;;
    *) die "node: expected start | stop | kill | pause | resume | pid (see '$0 help')" ;;
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
    cluster) cmd_cluster "$@" ;;
    node) cmd_node "$@" ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
