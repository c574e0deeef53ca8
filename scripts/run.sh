#!/usr/bin/env bash
# make run: builds the gateway, makes sure Redis is there, seeds the demo sandbox, starts the demo app and the gateway.
# Ctrl-C stops everything this script started, and nothing else.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

config="${SGW_CONFIG:-gateway.conf}"
demo_port="${DEMO_PORT:-3000}"
tls_port="${TLS_PORT:-8443}"
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

"${redis_cli[@]}" HSET "${key_prefix}demo" addr 127.0.0.1 execution_id demo-1 state running >/dev/null
echo "run.sh: seeded ${key_prefix}demo (addr 127.0.0.1, execution_id demo-1)"

if (exec 3<>"/dev/tcp/127.0.0.1/$demo_port") 2>/dev/null; then
    echo "run.sh: port $demo_port is taken; stop what listens there or set DEMO_PORT" >&2
    exit 1
fi
# The demo app runs under the reference resumer (demo/resumer.py): it starts the app now, and again
# when the gateway asks to resume the paused demo sandbox through the stream.
resume_url="$(directive resume_redis_url)"
resume_url="${resume_url:-$redis_url}"
resume_stream="$(directive resume_stream)"
mkdir -p "$run_dir"
/usr/bin/python3 demo/resumer.py --redis-url "$resume_url" --stream "${resume_stream:-sandbox:resume}" \
    --prefix "$key_prefix" --sandbox demo --app-port "$demo_port" --pid-file "$run_dir/demo-app.pid" \
    --start-app &
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

# HTTPS beside HTTP: unless the config has a TLS listener of its own, run it with a generated copy
# (.run/gateway.conf: the config plus `listen 127.0.0.1:$tls_port tls` and a self-signed ECDSA P-256
# certificate for *.<domain> and <domain>, made once into .run/tls/ and again when it no longer fits).
run_config="$config"
https_line=""
if ! awk '{ sub(/#.*/, "") } $1 == "listen" { for (i = 3; i <= NF; i++) if ($i == "tls") found = 1 } END { exit !found }' "$config"; then
    if (exec 3<>"/dev/tcp/127.0.0.1/$tls_port") 2>/dev/null; then
        echo "run.sh: port $tls_port is taken; stop what listens there or set TLS_PORT" >&2
        exit 1
    fi
    tls_dir="$run_dir/tls"
    certificate="$tls_dir/cert.pem"
    certificate_key="$tls_dir/key.pem"
    mkdir -p "$tls_dir"
    if [ ! -s "$certificate" ] || [ ! -s "$certificate_key" ] ||
        ! openssl x509 -in "$certificate" -noout -checkend 86400 >/dev/null 2>&1 ||
        ! openssl x509 -in "$certificate" -noout -checkhost "${demo_port}-demo.${domain}" 2>/dev/null | grep -q "does match"; then
        echo "run.sh: generating a self-signed certificate for *.${domain} into .run/tls/"
        if ! openssl_output="$( (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
            -nodes -keyout "$certificate_key" -out "$certificate" -days 365 -subj "/CN=*.${domain}" \
            -addext "subjectAltName=DNS:*.${domain},DNS:${domain}" \
            -addext "basicConstraints=critical,CA:FALSE" \
            -addext "keyUsage=critical,digitalSignature" \
            -addext "extendedKeyUsage=serverAuth") 2>&1)"; then
            echo "$openssl_output" >&2
            echo "run.sh: openssl could not make the certificate" >&2
            exit 1
        fi
        chmod 644 "$certificate"
    fi
    run_config="$run_dir/gateway.conf"
    {
        cat "$config"
        printf '\n# ---- added by scripts/run.sh (make run): HTTPS with a self-signed certificate\n'
        printf 'listen 127.0.0.1:%s tls\n' "$tls_port"
        printf 'tls_certificate %s\n' "$certificate"
        printf 'tls_certificate_key %s\n' "$certificate_key"
    } >"$run_config"
    https_line="curl --cacert .run/tls/cert.pem https://${demo_port}-demo.${domain}:${tls_port}/
    curl --http2 --cacert .run/tls/cert.pem https://${demo_port}-demo.${domain}:${tls_port}/   # HTTP/2 (ALPN h2)"
fi

cat <<MSG

  sandbox-gateway is starting on $listen_address; in another terminal try:

    curl ${curl_flags}${scheme}://${demo_port}-demo.${domain}:${listen_port}/
    curl ${curl_flags}--http2-prior-knowledge ${scheme}://${demo_port}-demo.${domain}:${listen_port}/   # HTTP/2 (h2c)
    curl ${curl_flags}-H 'E2b-Sandbox-Id: demo' -H 'E2b-Sandbox-Port: ${demo_port}' ${scheme}://sandbox.${domain}:${listen_port}/   # the shared host
${https_line:+    $https_line
}
  Auto-resume: pause the demo sandbox and stop its app; the next request wakes it
  (demo/resumer.py reads the gateway's resume request, starts the app, writes state running):

    ${redis_cli[*]} HSET ${key_prefix}demo state paused; kill \$(cat .run/demo-app.pid)
    curl ${curl_flags}${scheme}://${demo_port}-demo.${domain}:${listen_port}/

  (*.localhost resolves to 127.0.0.1 in curl and browsers.) Ctrl-C stops it all.

MSG

"$gateway_binary" -c "$run_config" &
gateway_pid=$!
started_pids+=("$gateway_pid")
status=0
wait "$gateway_pid" || status=$?
exit "$status"
