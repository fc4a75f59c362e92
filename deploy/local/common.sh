# Shared by kafka.sh and kafka-secure.sh (sourced, not run). Expects HERE, KAFKA_VERSION, KAFKA_HOME, LIBS, LOGS,
# PIDFILE, KAFKA_HEAP_OPTS, KAFKA_STOP_TIMEOUT and SCRIPT (the name messages start with) to be set.

say() { echo "$SCRIPT: $*" >&2; }
die() { say "$*"; exit 1; }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running_pid() {
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(cat "$PIDFILE")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

# Apache Kafka's jars from Maven Central (pom.xml: kafka_2.13 plus a logging binding), once.
fetch_jars() {
    [[ -f "$LIBS/.complete" ]] && return 0
    command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the Kafka jars: apt-get install maven"
    command -v java >/dev/null || die "Java 17 is needed to run Kafka: apt-get install openjdk-17-jre-headless"
    say "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
    rm -rf "$LIBS"
    mkdir -p "$LIBS" "$KAFKA_HOME"
    mvn -q -B -f "$HERE/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIBS" >"$KAFKA_HOME/mvn.log" 2>&1 \
        || { tail -n 40 "$KAFKA_HOME/mvn.log" >&2; die "mvn dependency:copy-dependencies failed (log: $KAFKA_HOME/mvn.log)"; }
    touch "$LIBS/.complete"
}

java_cmd() {
    # shellcheck disable=SC2086  # heap options are a list of words
    exec java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$HERE/log4j.properties" -Dkafka.logs.dir="$LOGS" \
        -cp "$LIBS/*" "$@"
}

# Stop the broker of $PIDFILE: SIGTERM, then SIGKILL after KAFKA_STOP_TIMEOUT seconds. $1 says where it listens.
stop_broker() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PIDFILE"
        say "not running on $1"
        return 0
    fi
    kill -TERM "$pid"
    local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        say "no clean shutdown within ${KAFKA_STOP_TIMEOUT}s; killing pid $pid"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    say "stopped (pid $pid)"
}

# What every single-node development broker here shares, appended to its server.properties.
single_node_properties() {
    cat <<'PROPERTIES'
# One node: internal topics cannot be replicated.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
default.replication.factor=1
# Topics are created explicitly (engagewatch topics create, Faust for its own): a typo must not create one.
auto.create.topics.enable=false
# Consumers join at once instead of after the default 3 s grace: tests start workers often.
group.initial.rebalance.delay.ms=0
# A small machine: few threads, small segments.
num.network.threads=2
num.io.threads=4
num.partitions=1
log.segment.bytes=67108864
log.retention.check.interval.ms=60000
log.cleaner.threads=1
PROPERTIES
}

# Ready = our process `$1` is alive, every port after it accepts connections and the server logged that it started.
wait_ready() {
    local pid=$1 deadline=$((SECONDS + KAFKA_START_TIMEOUT)) port ready ports
    shift
    ports="$*"
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || {
            tail -n 40 "$LOGS/server.log" "$LOGS/stdout.log" >&2 2>/dev/null || true
            die "the broker exited during start-up (logs: $LOGS)"
        }
        ready=1
        for port in "$@"; do
            port_open "$port" || ready=0
        done
        if ((ready)) && grep -q "Kafka Server started" "$LOGS/server.log" 2>/dev/null; then
            return 0
        fi
        sleep 0.2  # polling a condition, not a fixed wait
    done
    tail -n 40 "$LOGS/server.log" >&2 2>/dev/null || true
    die "the broker did not answer on 127.0.0.1:${ports// //} within ${KAFKA_START_TIMEOUT}s (logs: $LOGS)"
}
