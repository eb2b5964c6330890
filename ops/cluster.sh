#!/usr/bin/env bash
# Clustered stack on loopback: three Apache Kafka nodes in KRaft mode (each broker + controller,
# the jars of ops/kafka/pom.xml; replication factor 3, min.insync.replicas 2) and a Redis Cluster
# of three primaries and three replicas (Debian's redis-server). `make services CLUSTER=1`.
#
#   ops/cluster.sh up                  start what is not running (formats Kafka and creates the
#                                      Redis Cluster on first use), wait until all nodes serve
#   ops/cluster.sh down [--wipe]       stop only what this script started (by pid); --wipe also
#                                      deletes the cluster's data
#   ops/cluster.sh status              one line per node, partition leaders, Redis Cluster state
#   ops/cluster.sh env                 `export` lines pointing the project at this stack
#   ops/cluster.sh start kafka N|redis PORT   (re)start one node; wait until it serves again
#   ops/cluster.sh kill kafka N|redis PORT    kill -9 one node (fault injection)
#
# Ports, each the first of consecutive ones: FRAUD_CLUSTER_KAFKA_PORT (29092: clients on
# 29092-29094), FRAUD_CLUSTER_KAFKA_CONTROLLER_PORT (29192: 29192-29194), FRAUD_CLUSTER_REDIS_PORT
# (7000: 7000-7005, and their cluster bus ports 17000-17005). Tuning: FRAUD_CLUSTER_KAFKA_HEAP
# (384m per node), FRAUD_CLUSTER_BROKER_SESSION_MS (9000) and FRAUD_CLUSTER_BROKER_HEARTBEAT_MS
# (2000): how soon a dead node is fenced; FRAUD_CLUSTER_REDIS_NODE_TIMEOUT_MS (2000): how soon a
# dead primary is failed over; FRAUD_CLUSTER_REDIS_MAXMEMORY (512mb per node).
# State: $FRAUD_STATE_DIR/cluster/ (default .state/cluster/), pids $FRAUD_STATE_DIR/pids/cluster-*.pid.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${FRAUD_STATE_DIR:-$ROOT/.state}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
NAME=cluster
# shellcheck source=ops/common.sh
source "$ROOT/ops/common.sh"

CDIR="$STATE/cluster"
KAFKA_NODES=(1 2 3)
KAFKA_BASE="${FRAUD_CLUSTER_KAFKA_PORT:-29092}"
KAFKA_CONTROLLER_BASE="${FRAUD_CLUSTER_KAFKA_CONTROLLER_PORT:-29192}"
REDIS_BASE="${FRAUD_CLUSTER_REDIS_PORT:-7000}"
REDIS_PORTS=()
for i in 0 1 2 3 4 5; do REDIS_PORTS+=($((REDIS_BASE + i))); done
kafka_port() { echo $((KAFKA_BASE + $1 - 1)); }
kafka_controller_port() { echo $((KAFKA_CONTROLLER_BASE + $1 - 1)); }
BOOTSTRAP="$(for n in "${KAFKA_NODES[@]}"; do printf '127.0.0.1:%s,' "$(kafka_port "$n")"; done)"
BOOTSTRAP="${BOOTSTRAP%,}"
CONTROLLER_BOOTSTRAP="$(for n in "${KAFKA_NODES[@]}"; do printf '127.0.0.1:%s,' "$(kafka_controller_port "$n")"; done)"
CONTROLLER_BOOTSTRAP="${CONTROLLER_BOOTSTRAP%,}"

# --- Kafka ---------------------------------------------------------------------------------

kafka_uuid() {  # a Kafka Uuid (URL-safe base64, never starting with '-'), without a JVM start
  "$PY" -c 'import base64, uuid
while (s := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"): pass
print(s)'
}

kafka_conf() {  # kafka_conf NODE: write the node's server.properties
  local n="$1" dir="$CDIR/kafka/node-$1"
  mkdir -p "$dir/data" "$dir/logs"
  sed -e "s|@NODE_ID@|$n|g" -e "s|@PORT@|$(kafka_port "$n")|g" \
      -e "s|@CONTROLLER_PORT@|$(kafka_controller_port "$n")|g" \
      -e "s|@CONTROLLER_BOOTSTRAP@|$CONTROLLER_BOOTSTRAP|g" -e "s|@DATA_DIR@|$dir/data|g" \
      -e "s|@BROKER_SESSION_MS@|${FRAUD_CLUSTER_BROKER_SESSION_MS:-9000}|g" \
      -e "s|@BROKER_HEARTBEAT_MS@|${FRAUD_CLUSTER_BROKER_HEARTBEAT_MS:-2000}|g" \
      "$ROOT/ops/kafka/cluster.properties.in" >"$dir/server.properties"
}

java_opts() {  # java_opts NODE
  echo "-Xms128m -Xmx${FRAUD_CLUSTER_KAFKA_HEAP:-384m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20" \
    "-XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true" \
    "-Dlog4j2.configurationFile=$ROOT/ops/kafka/log4j2.properties -Dkafka.logs.dir=$CDIR/kafka/node-$1/logs"
}

kafka_format() {  # all three nodes at once, with one cluster id and the same initial controllers
  local n formatted=0
  for n in "${KAFKA_NODES[@]}"; do [[ -f "$CDIR/kafka/node-$n/data/meta.properties" ]] && formatted=$((formatted + 1)); done
  ((formatted == ${#KAFKA_NODES[@]})) && return
  ((formatted == 0)) || die "only $formatted of 3 Kafka nodes are formatted; run 'ops/cluster.sh down --wipe' and up again"
  local cluster_id voters="" pids=()
  cluster_id="$(kafka_uuid)"
  for n in "${KAFKA_NODES[@]}"; do voters+="${voters:+,}$n@127.0.0.1:$(kafka_controller_port "$n"):$(kafka_uuid)"; done
  say "formatting 3 Kafka nodes (cluster id $cluster_id)"
  for n in "${KAFKA_NODES[@]}"; do
    # shellcheck disable=SC2046
    java $(java_opts "$n") -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format -t "$cluster_id" \
      -c "$CDIR/kafka/node-$n/server.properties" --initial-controllers "$voters" \
      >"$CDIR/kafka/node-$n/format.log" 2>&1 &
    pids+=($!)
  done
  for n in "${KAFKA_NODES[@]}"; do
    wait "${pids[$((n - 1))]}" || die "formatting Kafka node $n failed; see $CDIR/kafka/node-$n/format.log"
  done
}

kafka_start() {  # kafka_start NODE (returns at once; kafka_wait waits)
  local n="$1" pidfile="$STATE/pids/cluster-kafka-$1.pid"
  if pid_alive "$pidfile"; then say "kafka node $n already running (pid $(cat "$pidfile"))"; return; fi
  check_port_free "$(kafka_port "$n")" "kafka node $n" "$pidfile"
  check_port_free "$(kafka_controller_port "$n")" "kafka node $n controller" "$pidfile"
  [[ -f "$CDIR/kafka/node-$n/data/meta.properties" ]] || die "kafka node $n is not formatted; run 'ops/cluster.sh up'"
  say "starting kafka node $n on 127.0.0.1:$(kafka_port "$n") (controller $(kafka_controller_port "$n"))"
  # shellcheck disable=SC2046
  nohup java $(java_opts "$n") -cp "$KAFKA_LIBS/*" kafka.Kafka "$CDIR/kafka/node-$n/server.properties" \
    >>"$CDIR/kafka/node-$n/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

kafka_wait() {  # kafka_wait SECONDS: until all three brokers are registered (unfenced)
  "$PY" - "$BOOTSTRAP" "$1" <<'PYTHON' || die "not all 3 Kafka brokers registered within $1 s; see $CDIR/kafka/node-*/logs/server.log"
import sys, time
from confluent_kafka.admin import AdminClient
bootstrap, timeout = sys.argv[1], float(sys.argv[2])
admin = AdminClient({"bootstrap.servers": bootstrap, "logger": None, "log_level": 0})
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        if len(admin.describe_cluster(request_timeout=3).result(timeout=5).nodes) == 3:
            sys.exit(0)
    except Exception:  # not up yet
        pass
    time.sleep(0.5)
sys.exit(1)
PYTHON
  say "kafka: 3 brokers registered ($BOOTSTRAP)"
}

# --- Redis Cluster ---------------------------------------------------------------------------

redis_start() {  # redis_start PORT (returns once the node answers PING)
  local p="$1" dir="$CDIR/redis/$1" pidfile="$STATE/pids/cluster-redis-$1.pid"
  if pid_alive "$pidfile"; then say "redis $p already running (pid $(cat "$pidfile"))"; return; fi
  check_port_free "$p" "redis node $p" "$pidfile"
  check_port_free $((p + 10000)) "redis node $p cluster bus" "$pidfile"
  mkdir -p "$dir"
  sed -e "s|@PORT@|$p|g" -e "s|@DIR@|$dir|g" \
      -e "s|@NODE_TIMEOUT_MS@|${FRAUD_CLUSTER_REDIS_NODE_TIMEOUT_MS:-2000}|g" \
      -e "s|@MAXMEMORY@|${FRAUD_CLUSTER_REDIS_MAXMEMORY:-512mb}|g" \
      "$ROOT/ops/redis/cluster.conf.in" >"$dir/redis.conf"
  nohup redis-server "$dir/redis.conf" >"$dir/stdout.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  wait_for 20 "redis node $p" redis-cli -p "$p" ping || die "redis node $p did not answer; see $dir/redis.log"
}

redis_converged() {  # every given node: cluster_state ok, all slots served, 3 replicas known
  local p
  for p in "$@"; do
    redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_slots_ok:16384' || return 1
    [[ "$(redis-cli -p "$p" cluster nodes 2>/dev/null | grep -v fail | grep -cE '[ ,]slave ')" -ge 3 ]] || return 1
  done
}

redis_synced() {  # redis_synced PORT: a primary, or a replica whose link to its primary is up
  local role; role="$(redis-cli -p "$1" info replication 2>/dev/null | tr -d '\r')"
  grep -q '^role:master' <<<"$role" || grep -q '^master_link_status:up' <<<"$role"
}

redis_up() {
  redis_binary
  local p
  for p in "${REDIS_PORTS[@]}"; do redis_start "$p"; done
  if redis-cli -p "$REDIS_BASE" cluster info | grep -q '^cluster_slots_assigned:0'; then
    say "creating the Redis Cluster: 3 primaries, 1 replica each"
    local nodes=()
    for p in "${REDIS_PORTS[@]}"; do nodes+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes \
      >"$CDIR/redis/cluster-create.log" 2>&1 || die "redis-cli --cluster create failed; see $CDIR/redis/cluster-create.log"
  fi
  # Right after creation some nodes still list replicas as primaries: wait for the roles too.
  wait_for 60 "redis cluster (127.0.0.1:${REDIS_PORTS[0]}-${REDIS_PORTS[5]})" redis_converged "${REDIS_PORTS[@]}" \
    || die "the Redis Cluster did not converge; see $CDIR/redis/*/redis.log"
}

# --- commands --------------------------------------------------------------------------------

up() {
  mkdir -p "$CDIR/kafka" "$CDIR/redis"
  kafka_libs
  local n
  for n in "${KAFKA_NODES[@]}"; do pid_alive "$STATE/pids/cluster-kafka-$n.pid" || kafka_conf "$n"; done
  kafka_format
  for n in "${KAFKA_NODES[@]}"; do kafka_start "$n"; done
  redis_up  # while the JVMs start
  kafka_wait 180
}

down() {
  local n p grace=60
  [[ "${1:-}" == --wipe ]] && grace=5  # the data goes anyway: no need to wait for a clean stop
  # In parallel: a node's controlled shutdown needs the quorum, which the others are part of.
  for n in "${KAFKA_NODES[@]}"; do stop_pidfile "$STATE/pids/cluster-kafka-$n.pid" "kafka node $n" "$grace" & done
  for p in "${REDIS_PORTS[@]}"; do stop_pidfile "$STATE/pids/cluster-redis-$p.pid" "redis node $p" 20 & done
  wait
  if [[ "${1:-}" == --wipe ]]; then say "deleting $CDIR"; rm -rf "$CDIR"; fi
}

env_lines() {
  echo "export KAFKA_BOOTSTRAP_SERVERS=$BOOTSTRAP"
  echo "export REDIS_URL=redis://127.0.0.1:$REDIS_BASE/0"
  echo "export FRAUD_REDIS_CLUSTER=1"
}

status() {
  local n p pidfile
  for n in "${KAFKA_NODES[@]}"; do
    pidfile="$STATE/pids/cluster-kafka-$n.pid"
    if pid_alive "$pidfile"; then echo "kafka-$n: running (pid $(cat "$pidfile")) on 127.0.0.1:$(kafka_port "$n")"
    elif [[ -f "$pidfile" ]]; then echo "kafka-$n: DEAD (pid file left: $(cat "$pidfile"))"
    else echo "kafka-$n: stopped"; fi
  done
  for p in "${REDIS_PORTS[@]}"; do
    pidfile="$STATE/pids/cluster-redis-$p.pid"
    if pid_alive "$pidfile"; then echo "redis-$p: running (pid $(cat "$pidfile")), $(redis-cli -p "$p" role 2>/dev/null | head -n1)"
    elif [[ -f "$pidfile" ]]; then echo "redis-$p: DEAD (pid file left: $(cat "$pidfile"))"
    else echo "redis-$p: stopped"; fi
  done
  for p in "${REDIS_PORTS[@]}"; do
    if pid_alive "$STATE/pids/cluster-redis-$p.pid"; then
      echo "redis cluster: $(redis-cli -p "$p" cluster info | grep -E '^cluster_(state|slots_ok|known_nodes)' | tr -d '\r' | tr '\n' ' ')"
      break
    fi
  done
}

node_arg() {  # node_arg KIND ID: check the node exists
  case "$1" in
    kafka) [[ " ${KAFKA_NODES[*]} " == *" $2 "* ]] || die "no kafka node $2 (nodes: ${KAFKA_NODES[*]})" ;;
    redis) [[ " ${REDIS_PORTS[*]} " == *" $2 "* ]] || die "no redis node on port $2 (ports: ${REDIS_PORTS[*]})" ;;
    *) die "usage: $0 start|kill kafka N|redis PORT" ;;
  esac
}

mkdir -p "$STATE/pids" "$STATE/logs"
case "${1:-up}" in
  up) up ;;
  down) down "${2:-}" ;;
  status) status ;;
  env) env_lines ;;
  start)
    node_arg "${2:-}" "${3:-}"
    if [[ "$2" == kafka ]]; then
      # The killed incarnation stays registered until it is fenced: wait for the new one's port.
      kafka_start "$3"
      wait_for 120 "kafka node $3" port_open "$(kafka_port "$3")" || die "kafka node $3 did not answer; see $CDIR/kafka/node-$3/logs/server.log"
      kafka_wait 120
    else
      redis_start "$3"
      wait_for 60 "redis node $3 replication" redis_synced "$3" || die "redis node $3 did not rejoin; see $CDIR/redis/$3/redis.log"
    fi ;;
  kill)
    node_arg "${2:-}" "${3:-}"
    if [[ "$2" == kafka ]]; then pidfile="$STATE/pids/cluster-kafka-$3.pid"; else pidfile="$STATE/pids/cluster-redis-$3.pid"; fi
    pid_alive "$pidfile" || die "$2 node $3 is not running"
    pid="$(cat "$pidfile")"
    kill -9 "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    say "killed $2 node $3 (pid $pid, SIGKILL)"
    rm -f "$pidfile" ;;
  *) die "usage: $0 up|down [--wipe]|status|env|start kafka N|start redis PORT|kill kafka N|kill redis PORT" ;;
esac
