#!/usr/bin/env bash
# A real Redis server for bp-relay's tests of the shared replay guard (--replay-store).
#
#   scripts/redis.sh start --port P --data-dir D [--password-file F] [--server-arg ARG]...
#   scripts/redis.sh stop  --data-dir D
#
# Uses the redis-server of the machine (Debian package `redis-server`; .ci/run installs it).
# Nothing is persisted: a replay guard's entries live only as long as their timestamp window.
set -euo pipefail

START_TIMEOUT_S=20

die() { echo "[redis.sh] $*" >&2; exit 1; }

usage() {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
}

start() {
  local port="" dir="" password_file=""
  local extra=()
  while (($#)); do
    case "$1" in
      --port) port="$2"; shift 2 ;;
      --data-dir) dir="$2"; shift 2 ;;
      --password-file) password_file="$2"; shift 2 ;;
      # Passed to redis-server as it is (e.g. --cluster-enabled then yes, for a test).
      --server-arg) extra+=("$2"); shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  [[ -n "$port" && -n "$dir" ]] || die "start needs --port and --data-dir"
  command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
  mkdir -p "$dir"
  local auth=()
  if [[ -n "$password_file" ]]; then
    # The password goes through a config file, not the command line (ps would show it).
    printf 'requirepass %s\n' "$(<"$password_file")" >"$dir/auth.conf"
    chmod 600 "$dir/auth.conf"
    auth=("$dir/auth.conf")
  fi
  redis-server "${auth[@]}" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" \
    ${extra[@]+"${extra[@]}"}
  local deadline=$((SECONDS + START_TIMEOUT_S))
  # Any answer proves it listens: PONG, or NOAUTH when a password is required.
  until [[ -n "$(redis-cli -p "$port" ping 2>/dev/null)" ]]; do
    ((SECONDS < deadline)) || die "redis on port $port did not answer within ${START_TIMEOUT_S}s; log: $dir/redis.log"
    sleep 0.1
  done
  echo "[redis.sh] redis ready on 127.0.0.1:$port"
}

stop() {
  local dir=""
  while (($#)); do
    case "$1" in
      --data-dir) dir="$2"; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  [[ -n "$dir" ]] || die "stop needs --data-dir"
  [[ -f "$dir/redis.pid" ]] || return 0
  local pid
  pid="$(<"$dir/redis.pid")"
  kill "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + START_TIMEOUT_S))
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS < deadline)) || { kill -9 "$pid" 2>/dev/null || true; break; }
    sleep 0.1
  done
  rm -f "$dir/redis.pid"
}

case "${1:-help}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) usage ;;
esac
