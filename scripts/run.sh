#!/usr/bin/env bash
# make run: builds the gateway, makes sure Redis is there, seeds the demo sandbox, starts the demo app and the gateway.
# Ctrl-C stops everything this script started, and nothing else.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

config="${SGW_CONFIG:-gateway.conf}"
demo_port="${DEMO_PORT:-3000}"
run_dir="$PWD/.run"

bash scripts/deps.sh run

if [ ! -f "$config" ]; then
    echo "run.sh: $config not found (the sample configuration lives at the repository root)" >&2
    exit 1
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
gateway_binary="$PWD/build/sandbox-gateway"

# The first value of a directive in the config file ("" when absent).
directive() {
    awk -v name="$1" '{ sub(/#.*/, "") } $1 == name { print $2; exit }' "$config"
}

redis_url="$(directive redis_url)"
redis_url="${redis_url:-redis://127.0.0.1:6379/0}"
key_prefix="$(directive redis_key_prefix)"
key_prefix="${key_prefix:-sandbox:catalog:}"

redis_cli=(redis-cli)
redis_local=no
case "$redis_url" in
    unix://*)
        redis_socket="${redis_url#unix://}"
        redis_socket="${redis_socket%%\?*}"
        redis_cli+=(-s "$redis_socket")
        redis_local=yes
        ;;
    redis://*)
        rest="${redis_url#redis://}"
        rest="${rest#*@}"                      # no credentials in the demo, but tolerate them
        hostport="${rest%%/*}"
        database=0
        [ "$rest" != "$hostport" ] && database="${rest#*/}"
        database="${database:-0}"
        if [[ "$hostport" == \[*\]* ]]; then   # [::1]:6379
            redis_host="${hostport%%]*}"; redis_host="${redis_host#[}"
            redis_port="${hostport##*]}"; redis_port="${redis_port#:}"
        elif [[ "$hostport" == *:* ]]; then
            redis_host="${hostport%:*}"; redis_port="${hostport##*:}"
        else
            redis_host="$hostport"; redis_port=""
        fi
        redis_host="${redis_host:-127.0.0.1}"
        redis_port="${redis_port:-6379}"
        redis_cli+=(-h "$redis_host" -p "$redis_port" -n "$database")
        case "$redis_host" in 127.*|localhost|::1) redis_local=yes ;; esac
        ;;
    *)
        echo "run.sh: cannot read redis_url '$redis_url' in $config" >&2
        exit 1
        ;;
esac

# Everything started here is remembered by PID and stopped by PID on exit.
started_pids=()
cleanup() {
    trap - INT TERM EXIT
    local pid
    for pid in "${started_pids[@]:+${started_pids[@]}}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${started_pids[@]:+${started_pids[@]}}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

redis_up() { [ "$("${redis_cli[@]}" ping 2>/dev/null)" = "PONG" ]; }

if redis_up; then
    echo "run.sh: using the Redis already at $redis_url"
elif [ "$redis_local" = yes ]; then
    mkdir -p "$run_dir"
    if [ -n "${redis_socket:-}" ]; then
        listen_args=(--port 0 --unixsocket "$redis_socket")
    else
        listen_args=(--port "$redis_port" --bind "$redis_host")
    fi
    echo "run.sh: starting a private redis-server for $redis_url (data in .run/)"
    redis-server "${listen_args[@]}" --dir "$run_dir" --save '' --appendonly no \
        --notify-keyspace-events Kgh --daemonize no --logfile "$run_dir/redis.log" &
    started_pids+=($!)
    for _ in $(seq 100); do redis_up && break; sleep 0.1; done
    if ! redis_up; then
        echo "run.sh: redis-server did not come up; see .run/redis.log" >&2
        exit 1
    fi
else
    echo "run.sh: nothing answers at $redis_url and it is not local: start it, or point redis_url elsewhere" >&2
    exit 1
fi

"${redis_cli[@]}" HSET "${key_prefix}demo" addr 127.0.0.1 execution_id demo-1 >/dev/null
echo "run.sh: seeded ${key_prefix}demo (addr 127.0.0.1, execution_id demo-1)"

if (exec 3<>"/dev/tcp/127.0.0.1/$demo_port") 2>/dev/null; then
    echo "run.sh: port $demo_port is taken; stop what listens there or set DEMO_PORT" >&2
    exit 1
fi
/usr/bin/python3 demo/app.py --host 127.0.0.1 --port "$demo_port" &
started_pids+=($!)

# The URL to try comes from the first listen line: "listen ADDR:PORT [tls] ...".
listen_line="$(awk '{ sub(/#.*/, "") } $1 == "listen" { print; exit }' "$config")"
listen_address="$(awk '{ print $2 }' <<<"$listen_line")"
listen_port="${listen_address##*:}"
scheme=http
curl_flags=""
if grep -qw tls <<<"$listen_line"; then scheme=https; curl_flags="-k "; fi
domain="$(directive domain)"
domain="${domain:-sandbox.localhost}"

cat <<MSG

  sandbox-gateway is starting on $listen_address; in another terminal try:

    curl ${curl_flags}${scheme}://${demo_port}-demo.${domain}:${listen_port}/

  (*.localhost resolves to 127.0.0.1 in curl and browsers.) Ctrl-C stops it all.

MSG

"$gateway_binary" -c "$config" &
gateway_pid=$!
started_pids+=("$gateway_pid")
status=0
wait "$gateway_pid" || status=$?
exit "$status"
