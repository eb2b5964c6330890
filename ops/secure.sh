# The secured local stack, sourced by ops/services.sh when SECURE=1:
#   Kafka  SASL_SSL (SCRAM-SHA-512 over TLS) + ACLs per role, controller on mutual TLS
#   Redis  TLS only (no plaintext port), ACL users: scorer limited to its key prefix and commands
#   MLflow the basic-auth server: nothing without signing in; trainer writes, reader reads
#
# Everything lives in $FRAUD_SECURE_STATE_DIR (default .state/secure): secrets/ (0700: random
# passwords, private keys), certs/ (the CA clients trust), env/<role>.env (0600: what one role's
# processes need), and each service's data and logs. Secrets are made once, on first `up`.
# Ports: FRAUD_SECURE_KAFKA_PORT (9192), FRAUD_SECURE_KAFKA_CONTROLLER_PORT (9193),
# FRAUD_SECURE_REDIS_PORT (6380), FRAUD_SECURE_MLFLOW_PORT (5050).

SSTATE="${FRAUD_SECURE_STATE_DIR:-$STATE/secure}"
SECRETS="$SSTATE/secrets"
CERTS="$SSTATE/certs"
ENVS="$SSTATE/env"
S_KAFKA_PORT="${FRAUD_SECURE_KAFKA_PORT:-9192}"
S_KAFKA_CONTROLLER_PORT="${FRAUD_SECURE_KAFKA_CONTROLLER_PORT:-9193}"
S_REDIS_PORT="${FRAUD_SECURE_REDIS_PORT:-6380}"
S_MLFLOW_PORT="${FRAUD_SECURE_MLFLOW_PORT:-5050}"
# One Kafka user per role (stream/kafka_acl.py says what each may do); admin is a super user.
KAFKA_ROLES=(admin scorer producer simulator analyst trainer monitor)
# The scorer's Redis keys: `<prefix>:*` (FRAUD_REDIS_PREFIX of the workers).
REDIS_SCORER_PREFIX="${FRAUD_REDIS_PREFIX:-fraud}"
# Exactly what the feature store and redis-py use: the handshake, the string/hash/sorted-set
# commands its Lua scripts call, scripts, MULTI/EXEC, SCAN + DEL for clear(). Not
# "+@all -@dangerous": that still allows SCRIPT FLUSH, FUNCTION and SCRIPT DEBUG.
REDIS_SCORER_COMMANDS='-@all +ping +hello +auth +echo +reset +select +client|setname +client|id
 +get +getrange +set +setrange +append +mget +del +unlink +exists +expire +pexpire +ttl +pttl +type
 +hget +hset +hdel +hgetall +hmget +hincrby +hlen
 +zadd +zrem +zcard +zcount +zrange +zrangebyscore +zremrangebyscore +zscore
 +eval +evalsha +eval_ro +evalsha_ro +script|load +script|exists
 +multi +exec +discard +watch +unwatch +scan'

secret() { grep -m1 "^$1=" "$SECRETS/passwords.env" | cut -d= -f2-; }

secure_secrets() {
  mkdir -p "$SECRETS" && chmod 700 "$SECRETS"
  local file="$SECRETS/passwords.env"
  [[ -f "$file" ]] && return
  [[ -x "$PY" ]] || die "no Python environment at $PY: run 'make setup' first"
  say "making the secure stack's secrets in $SECRETS"
  (
    umask 077
    {
      # Hex only: safe inside JAAS strings, INI files and env files without quoting.
      for role in "${KAFKA_ROLES[@]}"; do echo "KAFKA_PASSWORD_${role^^}=$(openssl rand -hex 24)"; done
      echo "KAFKA_KEY_PASSWORD=$(openssl rand -hex 24)"
      echo "REDIS_PASSWORD_ADMIN=$(openssl rand -hex 24)"
      echo "REDIS_PASSWORD_SCORER=$(openssl rand -hex 24)"
      echo "MLFLOW_ADMIN_PASSWORD=$(openssl rand -hex 24)"
      echo "MLFLOW_PASSWORD_TRAINER=$(openssl rand -hex 24)"
      echo "MLFLOW_PASSWORD_READER=$(openssl rand -hex 24)"
      echo "MLFLOW_FLASK_SERVER_SECRET_KEY=$(openssl rand -hex 32)"
      echo "FRAUD_PAN_HASH_KEY=$(openssl rand -hex 32)"
      "$PY" -m fraud.cli model-keys | grep '^FRAUD_MODEL_'
    } >"$file.tmp"
    mv "$file.tmp" "$file"
  )
}

secure_certs() {
  [[ -f "$SECRETS/kafka-broker.keystore.pem" && -f "$CERTS/ca.pem" ]] && return
  command -v openssl >/dev/null || die "openssl not found (Debian: apt-get install openssl)"
  say "making a CA and server certificates in $CERTS"
  mkdir -p "$CERTS"
  (
    umask 077
    local days="${FRAUD_SECURE_CERT_DAYS:-90}" name
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$SECRETS/ca.key"
    openssl req -x509 -new -key "$SECRETS/ca.key" -sha256 -days "$days" -subj "/CN=fraud-scorer-local-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$CERTS/ca.pem"
    # CN=kafka-broker is the broker's principal on the controller listener (a super user).
    for name in kafka-broker redis mlflow; do
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$SECRETS/$name.key"
      openssl req -new -key "$SECRETS/$name.key" -subj "/CN=$name" -out "$SECRETS/$name.csr"
      printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$SECRETS/$name.ext"
      openssl x509 -req -in "$SECRETS/$name.csr" -CA "$CERTS/ca.pem" -CAkey "$SECRETS/ca.key" \
        -CAcreateserial -CAserial "$SECRETS/ca.srl" -days "$days" -sha256 -extfile "$SECRETS/$name.ext" \
        -out "$CERTS/$name.pem" 2>/dev/null
      rm -f "$SECRETS/$name.csr" "$SECRETS/$name.ext"
    done
    # Java 17 reads PKCS#8 keys encrypted with PBE-SHA1-3DES, not openssl's default (PBES2).
    KAFKA_KEY_PASSWORD="$(secret KAFKA_KEY_PASSWORD)" openssl pkcs8 -topk8 -v1 PBE-SHA1-3DES \
      -in "$SECRETS/kafka-broker.key" -passout env:KAFKA_KEY_PASSWORD -out "$SECRETS/kafka-broker.key.p8"
    cat "$SECRETS/kafka-broker.key.p8" "$CERTS/kafka-broker.pem" "$CERTS/ca.pem" >"$SECRETS/kafka-broker.keystore.pem"
    rm -f "$SECRETS/kafka-broker.key" "$SECRETS/kafka-broker.key.p8"
  )
  chmod 755 "$CERTS" && chmod 644 "$CERTS"/*.pem
}

# env/<role>.env: production mode, and only the secrets that role's processes use.
secure_env_files() {
  mkdir -p "$ENVS" && chmod 700 "$ENVS"
  local role file
  for role in "${KAFKA_ROLES[@]}"; do
    file="$ENVS/$role.env"
    (
      umask 077
      {
        echo "# fraud-scorer secure stack: the $role role (set -a; source this; set +a)"
        echo "FRAUD_ENV=production"
        echo "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$S_KAFKA_PORT"
        echo "FRAUD_KAFKA_SECURITY_PROTOCOL=SASL_SSL"
        echo "FRAUD_KAFKA_USERNAME=$role"
        echo "FRAUD_KAFKA_PASSWORD=$(secret "KAFKA_PASSWORD_${role^^}")"
        echo "FRAUD_KAFKA_CA_FILE=$CERTS/ca.pem"
        echo "FRAUD_MODEL_TRUSTED_KEYS=$(secret FRAUD_MODEL_TRUSTED_KEYS)"
        echo "MLFLOW_TRACKING_URI=http://127.0.0.1:$S_MLFLOW_PORT"
        case "$role" in
          admin | scorer)  # the worker (the admin runs demo and benchmark workers)
            echo "REDIS_URL=rediss://127.0.0.1:$S_REDIS_PORT/0"
            echo "FRAUD_REDIS_USERNAME=$role"
            echo "FRAUD_REDIS_PASSWORD=$(secret "REDIS_PASSWORD_${role^^}")"
            echo "FRAUD_REDIS_CA_FILE=$CERTS/ca.pem"
            echo "FRAUD_PAN_HASH_KEY=$(secret FRAUD_PAN_HASH_KEY)"
            ;;
        esac
        case "$role" in
          admin)
            echo "MLFLOW_TRACKING_USERNAME=admin"
            echo "MLFLOW_TRACKING_PASSWORD=$(secret MLFLOW_ADMIN_PASSWORD)"
            echo "FRAUD_MODEL_SIGNING_KEY=$(secret FRAUD_MODEL_SIGNING_KEY)"
            ;;
          trainer)
            echo "MLFLOW_TRACKING_USERNAME=trainer"
            echo "MLFLOW_TRACKING_PASSWORD=$(secret MLFLOW_PASSWORD_TRAINER)"
            echo "FRAUD_MODEL_SIGNING_KEY=$(secret FRAUD_MODEL_SIGNING_KEY)"
            ;;
          scorer | monitor)
            echo "MLFLOW_TRACKING_USERNAME=reader"
            echo "MLFLOW_TRACKING_PASSWORD=$(secret MLFLOW_PASSWORD_READER)"
            ;;
        esac
      } >"$file"
    )
  done
}

load_role() {  # load_role ROLE: export that role's environment into this shell
  [[ -f "$ENVS/$1.env" ]] || die "no $ENVS/$1.env: start the stack first (SECURE=1 ops/services.sh up); roles: ${KAFKA_ROLES[*]}"
  set -a
  # shellcheck disable=SC1090
  source "$ENVS/$1.env"
  set +a
}

secure_kafka_up() {
  local pidfile="$SSTATE/pids/kafka.pid" conf="$SSTATE/kafka/server.properties" data="$SSTATE/kafka/data"
  local log="$SSTATE/logs/kafka/server.log"
  if pid_alive "$pidfile"; then say "secure kafka already running (pid $(cat "$pidfile"))"; return; fi
  check_port_free "$S_KAFKA_PORT" "secure kafka" "$pidfile"
  check_port_free "$S_KAFKA_CONTROLLER_PORT" "secure kafka controller" "$pidfile"
  kafka_libs
  mkdir -p "$data" "$SSTATE/logs/kafka"
  (
    umask 077
    sed -e "s|@PORT@|$S_KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$S_KAFKA_CONTROLLER_PORT|g" \
      -e "s|@DATA_DIR@|$data|g" -e "s|@SECRETS@|$SECRETS|g" -e "s|@CERTS@|$CERTS|g" \
      -e "s|@KEY_PASSWORD@|$(secret KAFKA_KEY_PASSWORD)|g" -e "s|@ADMIN_PASSWORD@|$(secret KAFKA_PASSWORD_ADMIN)|g" \
      "$ROOT/ops/kafka/server-secure.properties.in" >"$conf"
  )
  local java_opts=(-Xms256m "-Xmx$KAFKA_HEAP" -XX:+UseG1GC -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$ROOT/ops/kafka/log4j2.properties" "-Dkafka.logs.dir=$SSTATE/logs/kafka")
  if [[ ! -f "$data/meta.properties" ]]; then
    say "formatting secure Kafka storage in $data"
    # Only the admin (the broker's own login) is created here: a password on this command line
    # is visible in the process list while it runs. Role users follow over TLS (kafka-users).
    java "${java_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format \
      -t "$(java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)" \
      -c "$conf" --add-scram "SCRAM-SHA-512=[name=admin,password=$(secret KAFKA_PASSWORD_ADMIN)]" \
      >"$SSTATE/logs/kafka-format.log" 2>&1 || die "formatting failed; see $SSTATE/logs/kafka-format.log"
  fi
  [[ -f "$log" ]] && mv "$log" "$log.prev"
  say "starting secure kafka $KAFKA_VERSION on 127.0.0.1:$S_KAFKA_PORT (SASL_SSL)"
  nohup java "${java_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.Kafka "$conf" >"$SSTATE/logs/kafka.out" 2>&1 </dev/null &
  echo $! >"$pidfile"
  # The port opens before the SCRAM and ACL metadata is loaded: wait for the broker's own word.
  local deadline=$((SECONDS + 120))
  until grep -q "Kafka Server started" "$log" 2>/dev/null; do
    pid_alive "$pidfile" || die "secure kafka exited while starting; see $log"
    ((SECONDS < deadline)) || die "secure kafka did not start within 120 s; see $log"
    sleep 0.3
  done
  say "secure kafka is up"
  local users=("${KAFKA_ROLES[@]:1}") user
  (
    load_role admin
    for user in "${users[@]}"; do export "KAFKA_USER_PASSWORD_${user^^}=$(secret "KAFKA_PASSWORD_${user^^}")"; done
    "$PY" -m fraud.cli kafka-users "${users[@]}" && "$PY" -m fraud.cli topics --quiet && "$PY" -m fraud.cli acls
  ) || die "could not create the Kafka users, topics and ACLs"
}

secure_redis_up() {
  local pidfile="$SSTATE/pids/redis.pid" dir="$SSTATE/redis"
  if pid_alive "$pidfile"; then say "secure redis already running (pid $(cat "$pidfile"))"; return; fi
  check_port_free "$S_REDIS_PORT" "secure redis" "$pidfile"
  command -v redis-server >/dev/null || die "redis-server not found (Debian: apt-get install redis-server)"
  [[ "$(ldd "$(command -v redis-server)")" == *libssl* ]] || die "this redis-server is built without TLS"
  mkdir -p "$dir"
  sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
  (
    umask 077
    # Passwords are stored as SHA-256 only; the default user is off.
    {
      echo "user default off resetkeys resetchannels -@all"
      echo "user admin on #$(sha "$(secret REDIS_PASSWORD_ADMIN)") ~* &* +@all"
      echo "user scorer on #$(sha "$(secret REDIS_PASSWORD_SCORER)") resetkeys ~${REDIS_SCORER_PREFIX}:* resetchannels $(echo $REDIS_SCORER_COMMANDS)"
    } >"$dir/users.acl"
    cat >"$dir/redis.conf" <<CONF
bind 127.0.0.1
protected-mode yes
port 0
tls-port $S_REDIS_PORT
tls-cert-file $CERTS/redis.pem
tls-key-file $SECRETS/redis.key
tls-ca-cert-file $CERTS/ca.pem
# Clients prove who they are with ACL passwords, not client certificates.
tls-auth-clients no
tls-protocols "TLSv1.2 TLSv1.3"
aclfile $dir/users.acl
dir $dir
appendonly yes
save ""
CONF
  )
  say "starting secure redis on 127.0.0.1:$S_REDIS_PORT (TLS, ACL users)"
  nohup redis-server "$dir/redis.conf" >"$SSTATE/logs/redis.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  REDISCLI_AUTH="$(secret REDIS_PASSWORD_ADMIN)" wait_for 20 "secure redis" \
    redis-cli --tls --cacert "$CERTS/ca.pem" -h 127.0.0.1 -p "$S_REDIS_PORT" --user admin ping \
    || die "secure redis did not answer; see $SSTATE/logs/redis.log"
}

secure_mlflow_up() {
  local pidfile="$SSTATE/pids/mlflow.pid" dir="$SSTATE/mlflow"
  if pid_alive "$pidfile"; then say "mlflow (basic auth) already running (pid $(cat "$pidfile"))"; return; fi
  check_port_free "$S_MLFLOW_PORT" "mlflow" "$pidfile"
  mkdir -p "$dir/artifacts"
  (
    umask 077
    cat >"$dir/basic_auth.ini" <<INI
[mlflow]
# Signed-in users read everything and manage what they create; anonymous requests get 401.
default_permission = READ
database_uri = sqlite:///$dir/basic_auth.db
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
  )
  say "starting mlflow with basic auth on 127.0.0.1:$S_MLFLOW_PORT"
  # setsid: its own process group, so that `down` stops mlflow and the uvicorn it starts.
  MLFLOW_AUTH_CONFIG_PATH="$dir/basic_auth.ini" MLFLOW_AUTH_ADMIN_PASSWORD="$(secret MLFLOW_ADMIN_PASSWORD)" \
  MLFLOW_FLASK_SERVER_SECRET_KEY="$(secret MLFLOW_FLASK_SERVER_SECRET_KEY)" \
    setsid nohup "$PY" -m mlflow server --app-name basic-auth --host 127.0.0.1 --port "$S_MLFLOW_PORT" \
      --workers 1 --backend-store-uri "sqlite:///$dir/mlflow.db" --artifacts-destination "$dir/artifacts" \
      >"$SSTATE/logs/mlflow.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  wait_for 180 "mlflow (basic auth)" curl -fsS -o /dev/null "http://127.0.0.1:$S_MLFLOW_PORT/health" \
    || die "mlflow did not answer within 180 s; see $SSTATE/logs/mlflow.log"
  (
    export MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD="$(secret MLFLOW_ADMIN_PASSWORD)"
    export MLFLOW_PASSWORD_TRAINER="$(secret MLFLOW_PASSWORD_TRAINER)" MLFLOW_PASSWORD_READER="$(secret MLFLOW_PASSWORD_READER)"
    "$PY" "$ROOT/ops/mlflow/users.py" "http://127.0.0.1:$S_MLFLOW_PORT" trainer reader >>"$SSTATE/logs/mlflow.log"
  ) || die "could not create the MLflow users; see $SSTATE/logs/mlflow.log"
}

secure_up() {  # secure_up [kafka] [redis] [mlflow]   (default: all three)
  local parts=("$@")
  ((${#parts[@]})) || parts=(kafka redis mlflow)
  mkdir -p "$SSTATE/pids" "$SSTATE/logs" && chmod 700 "$SSTATE"
  secure_secrets
  secure_certs
  secure_env_files
  local part
  for part in "${parts[@]}"; do
    case "$part" in
      kafka) secure_kafka_up ;;
      redis) secure_redis_up ;;
      mlflow) secure_mlflow_up ;;
      *) die "unknown part '$part' (kafka, redis, mlflow)" ;;
    esac
  done
  say "roles: ops/services.sh as ROLE COMMAND... (${KAFKA_ROLES[*]}; env files in $ENVS)"
}

secure_down() {
  STATE="$SSTATE" stop_pid kafka
  STATE="$SSTATE" stop_pid redis
  local pidfile="$SSTATE/pids/mlflow.pid"
  if pid_alive "$pidfile"; then
    local pid; pid="$(cat "$pidfile")"
    say "stopping mlflow (process group $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

secure_status() {
  local name
  for name in kafka redis mlflow; do
    if pid_alive "$SSTATE/pids/$name.pid"; then echo "secure $name: running (pid $(cat "$SSTATE/pids/$name.pid"))"
    else echo "secure $name: stopped"; fi
  done
}

secure_as() {  # secure_as ROLE COMMAND...
  (($# >= 2)) || die "usage: ops/services.sh as ROLE COMMAND... (roles: ${KAFKA_ROLES[*]})"
  load_role "$1"
  shift
  exec "$@"
}
