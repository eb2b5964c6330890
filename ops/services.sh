#!/usr/bin/env bash
# Local stack on loopback: Apache Kafka (KRaft, jars from Maven Central), Redis, MLflow store.
#
#   ops/services.sh up      start what is not running, wait until each answers (idempotent)
#   ops/services.sh down    stop only the processes this script started (by pid)
#   ops/services.sh status  one line per service
#
# State (data, logs, pids) lives in $FRAUD_STATE_DIR (default: .state/ in the project).
#
# SECURE=1 runs the secured stack instead (ops/secure.sh): Kafka over SASL_SSL with ACLs per
# role, Redis over TLS with ACL users, MLflow's basic-auth server, on their own ports.
#
#   SECURE=1 ops/services.sh up [kafka] [redis] [mlflow]   (default: all three)
#   SECURE=1 ops/services.sh down | status
#   ops/services.sh as ROLE COMMAND...    run COMMAND with one role's credentials, e.g.
#                                          ops/services.sh as scorer .venv/bin/fraud worker
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${FRAUD_STATE_DIR:-$ROOT/.state}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
KAFKA_PORT="${FRAUD_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${FRAUD_KAFKA_CONTROLLER_PORT:-9093}"
REDIS_PORT="${FRAUD_REDIS_PORT:-6379}"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/ops/kafka/pom.xml")"
KAFKA_LIBS="$STATE/kafka/libs-$KAFKA_VERSION"
KAFKA_HEAP="${FRAUD_KAFKA_HEAP:-768m}"

say() { printf '[services] %s\n' "$*"; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what="$2"; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.3
  done
  say "$what is up"
}

check_port_free() {  # check_port_free PORT NAME PIDFILE
  if port_open "$1" && ! pid_alive "$3"; then
    die "port $1 (for $2) is taken by another process; stop it or set the port variable (see README)"
  fi
}

kafka_libs() {  # the broker's jars, resolved from Maven Central once
  command -v java >/dev/null || die "java not found: install a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless)"
  if [[ ! -f "$KAFKA_LIBS/.complete" ]]; then
    command -v mvn >/dev/null || die "mvn not found: install Maven (Debian: apt-get install maven) to fetch the Kafka jars"
    say "resolving Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_LIBS"
    mkdir -p "$KAFKA_LIBS"
    mvn -q -B -f "$ROOT/ops/kafka/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" >"$STATE/logs/maven.log" 2>&1 \
      || die "maven could not resolve the Kafka jars; see $STATE/logs/maven.log"
    touch "$KAFKA_LIBS/.complete"
  fi
}

kafka_up() {
  local pidfile="$STATE/pids/kafka.pid"
  if pid_alive "$pidfile"; then
    port_open "$KAFKA_PORT" || die "kafka of $STATE (pid $(cat "$pidfile")) runs, but not on port $KAFKA_PORT; stop it first (make services-down) or use its port"
    say "kafka already running (pid $(cat "$pidfile"))"; return
  fi
  check_port_free "$KAFKA_PORT" kafka "$pidfile"
  check_port_free "$KAFKA_CONTROLLER_PORT" "kafka controller" "$pidfile"
  kafka_libs
  local conf="$STATE/kafka/server.properties" data="$STATE/kafka/data"
  mkdir -p "$data"
  sed -e "s|@PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|@DATA_DIR@|$data|g" "$ROOT/ops/kafka/server.properties.in" >"$conf"
  local java_opts=(-Xms256m "-Xmx$KAFKA_HEAP" -XX:+UseG1GC -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$ROOT/ops/kafka/log4j2.properties" "-Dkafka.logs.dir=$STATE/logs/kafka")
  mkdir -p "$STATE/logs/kafka"
  if [[ ! -f "$data/meta.properties" ]]; then
    say "formatting Kafka storage in $data"
    java "${java_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format \
      -t "$(java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)" \
      -c "$conf" >"$STATE/logs/kafka-format.log" 2>&1 || die "formatting failed; see $STATE/logs/kafka-format.log"
  fi
  say "starting kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT"
  nohup java "${java_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.Kafka "$conf" \
    >"$STATE/logs/kafka.out" 2>&1 </dev/null &
  echo $! >"$pidfile"
  wait_for 90 kafka port_open "$KAFKA_PORT" || die "kafka did not answer within 90 s; see $STATE/logs/kafka.out and $STATE/logs/kafka/server.log"
}

redis_up() {
  local pidfile="$STATE/pids/redis.pid"
  if pid_alive "$pidfile"; then
    port_open "$REDIS_PORT" || die "redis of $STATE (pid $(cat "$pidfile")) runs, but not on port $REDIS_PORT; stop it first (make services-down) or use its port"
    say "redis already running (pid $(cat "$pidfile"))"; return
  fi
  check_port_free "$REDIS_PORT" redis "$pidfile"
  if ! command -v redis-server >/dev/null; then
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
      say "installing redis-server with apt-get"
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) \
        >"$STATE/logs/apt-redis.log" 2>&1 || die "apt-get could not install redis-server; see $STATE/logs/apt-redis.log"
    else
      die "redis-server not found: install it (Debian: sudo apt-get install redis-server)"
    fi
  fi
  mkdir -p "$STATE/redis"
  say "starting redis on 127.0.0.1:$REDIS_PORT"
  # Aggregates are rebuilt from Kafka if lost, but an append-only file makes restarts cheap.
  nohup redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$STATE/redis" \
    --appendonly yes --save "" --protected-mode yes \
    >"$STATE/logs/redis.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  wait_for 20 redis redis-cli -p "$REDIS_PORT" ping || die "redis did not answer; see $STATE/logs/redis.log"
}

mlflow_up() {
  mkdir -p "$STATE/mlflow/artifacts"
  [[ -x "$PY" ]] || die "no Python environment at $PY: run 'make setup' first"
  # The embedded store is a SQLite file: creating it runs MLflow's migrations once.
  "$PY" -m fraud.cli mlflow-check >"$STATE/logs/mlflow.log" 2>&1 \
    || die "the MLflow store did not open; see $STATE/logs/mlflow.log"
  say "mlflow store ready ($(tail -n1 "$STATE/logs/mlflow.log"))"
}

topics_up() {
  "$PY" -m fraud.cli topics --quiet || die "could not create the Kafka topics"
}

stop_pid() {  # stop_pid NAME
  local pidfile="$STATE/pids/$1.pid"
  if pid_alive "$pidfile"; then
    local pid; pid="$(cat "$pidfile")"
    say "stopping $1 (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

status() {
  for name in kafka redis; do
    if pid_alive "$STATE/pids/$name.pid"; then echo "$name: running (pid $(cat "$STATE/pids/$name.pid"))"
    else echo "$name: stopped"; fi
  done
  if [[ -f "$STATE/mlflow/mlflow.db" ]]; then echo "mlflow: store at $STATE/mlflow/mlflow.db"; else echo "mlflow: no store yet"; fi
}

mkdir -p "$STATE/pids" "$STATE/logs"
# shellcheck source=ops/secure.sh
source "$ROOT/ops/secure.sh"
command="${1:-up}"
(($#)) && shift
if [[ "${SECURE:-0}" == 1 ]]; then
  case "$command" in
    up) secure_up "$@" ;;
    down) secure_down ;;
    status) secure_status ;;
    as) secure_as "$@" ;;
    *) die "usage: SECURE=1 $0 up [kafka] [redis] [mlflow] | down | status | as ROLE COMMAND..." ;;
  esac
  exit 0
fi
case "$command" in
  up) kafka_up; redis_up; mlflow_up; topics_up ;;
  down) stop_pid kafka; stop_pid redis ;;
  status) status ;;
  as) secure_as "$@" ;;
  *) die "usage: $0 up|down|status|as ROLE COMMAND... (SECURE=1 for the secured stack)" ;;
esac
