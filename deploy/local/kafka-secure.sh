#!/usr/bin/env bash
# A second single-node Apache Kafka 3.9.1 broker (KRaft) that only speaks TLS, for proving engagewatch's security
# settings against real parts: SASL_SSL (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN) and SSL with client certificates.
#
#   deploy/local/kafka-secure.sh start    make a throwaway CA and certificates (first use), format storage with the
#                                         SCRAM users (first use), start, wait until the TLS listeners answer
#   deploy/local/kafka-secure.sh stop     stop it (SIGTERM, then SIGKILL after KAFKA_STOP_TIMEOUT seconds)
#   deploy/local/kafka-secure.sh status   exit 0 when running and answering, 3 when not
#   deploy/local/kafka-secure.sh reset    stop it and delete everything of it (certificates, users, data)
#   deploy/local/kafka-secure.sh env MODE print the ENGAGEWATCH_KAFKA__* settings for MODE (scram-sha-512,
#                                         scram-sha-256, plain, mtls) as `export` lines
#
# Listeners, all on 127.0.0.1:
#   SASL_SSL   KAFKA_SECURE_SASL_PORT (default 9192): SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN, user `engagewatch`
#   SSL        KAFKA_SECURE_SSL_PORT (default SASL port + 1): mutual TLS, ssl.client.auth=required
#   CONTROLLER KAFKA_SECURE_CONTROLLER_PORT (default SASL port + 2): KRaft quorum of this one node only
#
# Everything of one broker lives in $KAFKA_HOME/secure-$KAFKA_SECURE_SASL_PORT/ (git-ignored): ca.pem, the broker's
# PKCS12 keystore and truststore, the client certificate (client.pem) and its encrypted key (client.key), the
# random passwords (secrets.env, mode 600), one client settings file per mode (<mode>.env), config, data, logs.
# The jars are the ones deploy/local/kafka.sh fetches ($KAFKA_HOME/libs-3.9.1); they are fetched the same way
# when missing. Needs Java 17 (java, keytool) and openssl.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_VERSION=3.9.1
SASL_PORT="${KAFKA_SECURE_SASL_PORT:-9192}"
SSL_PORT="${KAFKA_SECURE_SSL_PORT:-$((SASL_PORT + 1))}"
CONTROLLER_PORT="${KAFKA_SECURE_CONTROLLER_PORT:-$((SASL_PORT + 2))}"
KAFKA_HOME="${KAFKA_HOME:-$HERE/.kafka}"
KAFKA_HEAP_OPTS="${KAFKA_SECURE_HEAP_OPTS:--Xms128m -Xmx512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
USER_NAME=engagewatch

LIBS="$KAFKA_HOME/libs-$KAFKA_VERSION"
RUN="$KAFKA_HOME/secure-$SASL_PORT"
TLS="$RUN/tls"
CONFIG="$RUN/server.properties"
DATA="$RUN/data"
LOGS="$RUN/logs"
PIDFILE="$RUN/kafka.pid"
SECRETS="$RUN/secrets.env"

SCRIPT=kafka-secure.sh
# shellcheck source=deploy/local/common.sh
source "$HERE/common.sh"

need_tools() {
    local tool
    for tool in java keytool openssl; do
        command -v "$tool" >/dev/null || die "$tool is needed (Java 17: apt-get install openjdk-17-jre-headless; openssl)"
    done
}

# Random passwords, made once per broker and kept beside its certificates.
make_secrets() {
    [[ -f "$SECRETS" ]] && return 0
    mkdir -p "$RUN"
    (
        umask 077
        cat >"$SECRETS" <<EOF
SASL_PASSWORD=$(openssl rand -hex 16)
STORE_PASSWORD=$(openssl rand -hex 16)
CLIENT_KEY_PASSWORD=$(openssl rand -hex 16)
EOF
    )
}

# A throwaway CA; the broker's certificate (127.0.0.1 and localhost) in a PKCS12 keystore, the CA in a PKCS12
# truststore (keytool); a client certificate with a password-protected PEM key for mutual TLS.
make_certificates() {
    [[ -f "$TLS/.complete" ]] && return 0
    # shellcheck disable=SC1090
    source "$SECRETS"
    rm -rf "$TLS"
    mkdir -p "$TLS"
    (
        umask 077
        cd "$TLS"
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -sha256 -subj "/CN=engagewatch local test CA" \
            -keyout ca.key -out ca.pem \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout broker.key -out broker.csr
        printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "extendedKeyUsage=serverAuth,clientAuth" \
            >broker.ext
        openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -sha256 \
            -extfile broker.ext -out broker.pem
        openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker \
            -passout "pass:$STORE_PASSWORD" -out broker.p12
        keytool -importcert -noprompt -alias ca -file ca.pem -storetype PKCS12 -keystore truststore.p12 \
            -storepass "$STORE_PASSWORD"
        openssl req -newkey rsa:2048 -subj "/CN=$USER_NAME" -passout "pass:$CLIENT_KEY_PASSWORD" \
            -keyout client.key -out client.csr
        printf '%s\n' "extendedKeyUsage=clientAuth" >client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -sha256 \
            -extfile client.ext -out client.pem
        rm -f ./*.csr ./*.ext
        chmod 644 ca.pem client.pem
    ) >"$RUN/certificates.log" 2>&1 || { cat "$RUN/certificates.log" >&2; die "making the certificates failed"; }
    touch "$TLS/.complete"
    say "made a throwaway CA and certificates in $TLS"
}

write_config() {
    # shellcheck disable=SC1090
    source "$SECRETS"
    mkdir -p "$DATA" "$LOGS"
    (
        umask 077
        cat >"$CONFIG" <<EOF
# Written by deploy/local/kafka-secure.sh: one KRaft node, broker and controller, on 127.0.0.1 only. TLS only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=SASL_SSL://127.0.0.1:$SASL_PORT,SSL://127.0.0.1:$SSL_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$SASL_PORT,SSL://127.0.0.1:$SSL_PORT
# The controller listener serves this node's own quorum on the loopback interface only.
listener.security.protocol.map=SASL_SSL:SASL_SSL,SSL:SSL,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=SSL
log.dirs=$DATA

# TLS: the broker's certificate, and the CA that signs every client certificate.
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS/broker.p12
ssl.keystore.password=$STORE_PASSWORD
ssl.key.password=$STORE_PASSWORD
ssl.truststore.type=PKCS12
ssl.truststore.location=$TLS/truststore.p12
ssl.truststore.password=$STORE_PASSWORD
ssl.enabled.protocols=TLSv1.3,TLSv1.2
# Mutual TLS on the SSL listener: no client certificate signed by the CA, no connection.
listener.name.ssl.ssl.client.auth=required

# SASL on the SASL_SSL listener. SCRAM users are stored in the metadata log (kafka-storage format --add-scram);
# the PLAIN user is declared here.
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$USER_NAME="$SASL_PASSWORD";
EOF
        single_node_properties >>"$CONFIG"
    )
}

format_storage() {
    [[ -f "$DATA/meta.properties" ]] && return 0
    # shellcheck disable=SC1090
    source "$SECRETS"
    local cluster_id
    cluster_id="$( (java_cmd kafka.tools.StorageTool random-uuid) 2>/dev/null | tail -n 1)"
    [[ -n "$cluster_id" ]] || die "could not generate a cluster id (kafka.tools.StorageTool random-uuid)"
    (java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$CONFIG" --ignore-formatted \
        --add-scram "SCRAM-SHA-256=[name=$USER_NAME,password=$SASL_PASSWORD]" \
        --add-scram "SCRAM-SHA-512=[name=$USER_NAME,password=$SASL_PASSWORD]") >"$LOGS/format.log" 2>&1 \
        || { cat "$LOGS/format.log" >&2; die "formatting storage in $DATA failed"; }
    say "formatted storage in $DATA with SCRAM users (cluster id $cluster_id)"
}

# Client settings per mode, ready to `source` (mode 600: they hold the passwords).
write_client_env() {
    # shellcheck disable=SC1090
    source "$SECRETS"
    local common="export ENGAGEWATCH_KAFKA__SSL_CAFILE=$TLS/ca.pem"
    local mech mode
    (
        umask 077
        for mech in SCRAM-SHA-512 SCRAM-SHA-256 PLAIN; do
            mode="$(echo "$mech" | tr 'A-Z' 'a-z')"
            cat >"$RUN/$mode.env" <<EOF
export ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:$SASL_PORT
export ENGAGEWATCH_KAFKA__SECURITY_PROTOCOL=SASL_SSL
export ENGAGEWATCH_KAFKA__SASL_MECHANISM=$mech
export ENGAGEWATCH_KAFKA__SASL_USERNAME=$USER_NAME
export ENGAGEWATCH_KAFKA__SASL_PASSWORD=$SASL_PASSWORD
$common
EOF
        done
        cat >"$RUN/mtls.env" <<EOF
export ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:$SSL_PORT
export ENGAGEWATCH_KAFKA__SECURITY_PROTOCOL=SSL
$common
export ENGAGEWATCH_KAFKA__SSL_CERTFILE=$TLS/client.pem
export ENGAGEWATCH_KAFKA__SSL_KEYFILE=$TLS/client.key
export ENGAGEWATCH_KAFKA__SSL_KEYFILE_PASSWORD=$CLIENT_KEY_PASSWORD
EOF
    )
}

cmd_start() {
    local pid port
    if pid="$(running_pid)"; then
        say "already running (pid $pid): SASL_SSL 127.0.0.1:$SASL_PORT, SSL 127.0.0.1:$SSL_PORT"
        return 0
    fi
    for port in "$SASL_PORT" "$SSL_PORT" "$CONTROLLER_PORT"; do
        port_open "$port" && die "127.0.0.1:$port is taken by another process; pick other KAFKA_SECURE_*_PORT values"
    done
    need_tools
    mkdir -p "$KAFKA_HOME"
    fetch_jars
    make_secrets
    make_certificates
    write_config
    format_storage
    write_client_env
    : >"$LOGS/server.log"
    (trap '' HUP; java_cmd kafka.Kafka "$CONFIG") >"$LOGS/stdout.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PIDFILE"
    wait_ready "$pid" "$SASL_PORT" "$SSL_PORT"
    say "Apache Kafka $KAFKA_VERSION running (pid $pid): SASL_SSL 127.0.0.1:$SASL_PORT," \
        "SSL (client certificate required) 127.0.0.1:$SSL_PORT; log: $LOGS/server.log;" \
        "client settings: $RUN/{scram-sha-512,scram-sha-256,plain,mtls}.env"
}

cmd_stop() { stop_broker "127.0.0.1:$SASL_PORT"; }

cmd_status() {
    local pid
    if pid="$(running_pid)" && port_open "$SASL_PORT" && port_open "$SSL_PORT"; then
        echo "running: pid $pid, SASL_SSL 127.0.0.1:$SASL_PORT, SSL 127.0.0.1:$SSL_PORT, log $LOGS/server.log"
        return 0
    fi
    echo "not running on 127.0.0.1:$SASL_PORT"
    return 3
}

cmd_reset() {
    cmd_stop
    rm -rf "$RUN"
    say "deleted $RUN"
}

cmd_env() {
    local mode="${1:-}"
    [[ -f "$RUN/$mode.env" ]] || die "no settings for mode '$mode' (scram-sha-512, scram-sha-256, plain, mtls); start first"
    cat "$RUN/$mode.env"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    env) cmd_env "${2:-}" ;;
    logs) echo "$LOGS/server.log" ;;
    *) echo "usage: $0 start|stop|status|reset|logs|env MODE" >&2; exit 2 ;;
esac
