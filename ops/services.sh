#!/usr/bin/env bash
# Local stack on loopback: Apache Kafka (KRaft, jars from Maven Central), Redis, MLflow store.
#
#   ops/services.sh up      start what is not running, wait until each answers (idempotent)
#   ops/services.sh down    stop only the processes this script started (by pid)
#   ops/services.sh status  one line per service
#   CLUSTER=1 ops/services.sh up|down|status   the clustered stack instead (ops/cluster.sh: three
#                           Kafka nodes, a Redis Cluster of six), with the same MLflow store and topics
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
KAFKA_HEAP="${FRAUD_KAFKA_HEAP:-768m}"
NAME=services
# shellcheck source=ops/common.sh
source "$ROOT/ops/common.sh"

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
  redis_binary
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

stop_pid() { stop_pidfile "$STATE/pids/$1.pid" "$1" 20; }  # stop_pid NAME

status() {
  for name in kafka redis; do
    if pid_alive "$STATE/pids/$name.pid"; then echo "$name: running (pid $(cat "$STATE/pids/$name.pid"))"
    else echo "$name: stopped"; fi
  done
  if [[ -f "$STATE/mlflow/mlflow.db" ]]; then echo "mlflow: store at $STATE/mlflow/mlflow.db"; else echo "mlflow: no store yet"; fi
}

cluster() {  # the clustered stack: ops/cluster.sh, then the MLflow store and the topics on it
  case "${1:-up}" in
    up)
      "$ROOT/ops/cluster.sh" up
      eval "$("$ROOT/ops/cluster.sh" env)"
      mlflow_up; topics_up
      say "point the project at the cluster with: eval \"\$(ops/cluster.sh env)\""
      "$ROOT/ops/cluster.sh" env | sed 's/^/  /' ;;
    down) "$ROOT/ops/cluster.sh" down ;;
    status) "$ROOT/ops/cluster.sh" status ;;
    *) die "usage: CLUSTER=1 $0 up|down|status" ;;
  esac
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
if [[ "${CLUSTER:-0}" == 1 ]]; then cluster "$command"; exit 0; fi
case "$command" in
  up) kafka_up; redis_up; mlflow_up; topics_up ;;
  down) stop_pid kafka; stop_pid redis ;;
  status) status ;;
  as) secure_as "$@" ;;
  *) die "usage: $0 up|down|status|as ROLE COMMAND... (SECURE=1 for the secured stack)" ;;
esac
