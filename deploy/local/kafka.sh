#!/usr/bin/env bash
# A single-node Apache Kafka 3.9.1 broker in KRaft mode, for development and tests, built from Maven Central jars.
#
#   deploy/local/kafka.sh start    fetch the jars (first use), format storage (first use), start, wait until it answers
#   deploy/local/kafka.sh stop     stop it (SIGTERM, then SIGKILL after KAFKA_STOP_TIMEOUT seconds)
#   deploy/local/kafka.sh status   exit 0 when running and answering, 3 when not
#   deploy/local/kafka.sh reset    stop it and delete its data (topics, offsets)
#   deploy/local/kafka.sh logs     print the path of the server log
#
# Environment:
#   KAFKA_PORT             client listener on 127.0.0.1 (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener on 127.0.0.1 (default KAFKA_PORT + 1)
#   KAFKA_HOME             jars and per-port state (default deploy/local/.kafka, git-ignored)
#   KAFKA_HEAP_OPTS        JVM heap (default -Xms256m -Xmx1g)
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer (default 90)
#   KAFKA_STOP_TIMEOUT     seconds to wait for a clean shutdown (default 30)
#
# Everything of one broker lives in $KAFKA_HOME/run-$KAFKA_PORT/ (config, data, logs, pid), so brokers on two
# ports do not share storage. Everything binds to 127.0.0.1 only.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_VERSION=3.9.1
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_HOME="${KAFKA_HOME:-$HERE/.kafka}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

LIBS="$KAFKA_HOME/libs-$KAFKA_VERSION"
RUN="$KAFKA_HOME/run-$KAFKA_PORT"
CONFIG="$RUN/server.properties"
DATA="$RUN/data"
LOGS="$RUN/logs"
PIDFILE="$RUN/kafka.pid"

SCRIPT=kafka.sh
# shellcheck source=deploy/local/common.sh
source "$HERE/common.sh"

write_config() {
    mkdir -p "$DATA" "$LOGS"
    cat >"$CONFIG" <<EOF
# Written by deploy/local/kafka.sh: one KRaft node that is both broker and controller, on 127.0.0.1 only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA
EOF
    single_node_properties >>"$CONFIG"
}

format_storage() {
    [[ -f "$DATA/meta.properties" ]] && return 0
    local cluster_id
    cluster_id="$((java_cmd kafka.tools.StorageTool random-uuid) 2>/dev/null | tail -n 1)"
    [[ -n "$cluster_id" ]] || die "could not generate a cluster id (kafka.tools.StorageTool random-uuid)"
    (java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$CONFIG" --ignore-formatted) >"$LOGS/format.log" 2>&1 \
        || { cat "$LOGS/format.log" >&2; die "formatting storage in $DATA failed"; }
    say "formatted storage in $DATA (cluster id $cluster_id)"
}

cmd_start() {
    local pid
    if pid="$(running_pid)"; then
        say "already running (pid $pid) on 127.0.0.1:$KAFKA_PORT"
        return 0
    fi
    if port_open "$KAFKA_PORT"; then
        die "127.0.0.1:$KAFKA_PORT is taken by another process; pick another KAFKA_PORT"
    fi
    if port_open "$KAFKA_CONTROLLER_PORT"; then
        die "127.0.0.1:$KAFKA_CONTROLLER_PORT is taken by another process; pick another KAFKA_CONTROLLER_PORT"
    fi
    fetch_jars
    write_config
    format_storage
    # The server log is rotated by log4j; stdout.log only catches what the JVM prints before logging is set up.
    : >"$LOGS/server.log"
    (trap '' HUP; java_cmd kafka.Kafka "$CONFIG") >"$LOGS/stdout.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PIDFILE"
    wait_ready "$pid" "$KAFKA_PORT"
    say "Apache Kafka $KAFKA_VERSION running (pid $pid) on 127.0.0.1:$KAFKA_PORT; log: $LOGS/server.log"
}

cmd_stop() { stop_broker "127.0.0.1:$KAFKA_PORT"; }

cmd_status() {
    local pid
    if pid="$(running_pid)" && port_open "$KAFKA_PORT"; then
        echo "running: pid $pid, 127.0.0.1:$KAFKA_PORT, log $LOGS/server.log"
        return 0
    fi
    echo "not running on 127.0.0.1:$KAFKA_PORT"
    return 3
}

cmd_reset() {
    cmd_stop
    rm -rf "$RUN"
    say "deleted $RUN"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    logs) echo "$LOGS/server.log" ;;
    *) echo "usage: $0 start|stop|status|reset|logs" >&2; exit 2 ;;
esac
