# Helpers shared by ops/services.sh and ops/cluster.sh; sourced, not run. The caller sets ROOT,
# STATE and NAME (the prefix of its messages) first.

say() { printf '[%s] %s\n' "$NAME" "$*"; }
die() { printf '[%s] error: %s\n' "$NAME" "$*" >&2; exit 1; }

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

stop_pidfile() {  # stop_pidfile PIDFILE NAME [GRACE_SECONDS]: SIGTERM, SIGKILL after the grace
  local pidfile="$1" grace="${3:-20}"
  if pid_alive "$pidfile"; then
    local pid; pid="$(cat "$pidfile")"
    say "stopping $2 (pid $pid)"
    kill "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < grace * 5; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/ops/kafka/pom.xml")"
# One copy of the jars serves every stack (FRAUD_KAFKA_LIBS points elsewhere, e.g. for tests).
KAFKA_LIBS="${FRAUD_KAFKA_LIBS:-$STATE/kafka/libs-$KAFKA_VERSION}"

kafka_libs() {  # the broker's runtime classpath, resolved from Maven Central once
  command -v java >/dev/null || die "java not found: install a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless)"
  [[ -f "$KAFKA_LIBS/.complete" ]] && return
  command -v mvn >/dev/null || die "mvn not found: install Maven (Debian: apt-get install maven) to fetch the Kafka jars"
  say "resolving Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_LIBS"
  mkdir -p "$KAFKA_LIBS" "$STATE/logs"
  mvn -q -B -f "$ROOT/ops/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" >"$STATE/logs/maven.log" 2>&1 \
    || die "maven could not resolve the Kafka jars; see $STATE/logs/maven.log"
  touch "$KAFKA_LIBS/.complete"
}

redis_binary() {  # Debian's redis-server, installed with apt-get when running as root
  command -v redis-server >/dev/null && return
  if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing redis-server with apt-get"
    mkdir -p "$STATE/logs"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) \
      >"$STATE/logs/apt-redis.log" 2>&1 || die "apt-get could not install redis-server; see $STATE/logs/apt-redis.log"
  else
    die "redis-server not found: install it (Debian: sudo apt-get install redis-server)"
  fi
}
