#!/usr/bin/env bash
# Installs the Debian 12 packages sandbox-gateway needs that are missing: deps.sh [build|run|test|fuzz|bench].
set -euo pipefail

profile="${1:-build}"

build_packages=(cmake make gcc pkg-config libevent-dev libssl-dev libhiredis-dev libsodium-dev libnghttp2-dev liburing-dev node-llhttp libnftables-dev)
case "$profile" in
    build) wanted=("${build_packages[@]}") ;;
    run)   wanted=("${build_packages[@]}" redis-server curl python3 openssl) ;;
    test)  wanted=("${build_packages[@]}" libcmocka-dev python3 python3-pytest python3-h2 python3-grpcio nghttp2-client chromium jupyter-notebook python3-ipykernel redis-server curl wrk openssl nftables iproute2 haproxy valgrind clang libclang-rt-14-dev) ;;
    fuzz)  wanted=("${build_packages[@]}" clang libclang-rt-14-dev python3 python3-pytest) ;;
    bench) wanted=("${build_packages[@]}" redis-server curl python3 wrk nghttp2-client nghttp2-server openssl nginx-light haproxy gnuplot-nox) ;;
    -h|--help)
        echo "usage: $0 [build|run|test|fuzz|bench]"
        exit 0 ;;
    *)
        echo "deps.sh: unknown profile '$profile' (expected build, run, test, fuzz or bench)" >&2
        exit 2 ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps.sh: dpkg-query not found: this script expects Debian 12 (bookworm)" >&2
    exit 1
fi

missing=()
for package in "${wanted[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)"
    if [ "$status" != "installed" ]; then
        # Skip duplicates (redis-server, curl appear in several lists).
        case " ${missing[*]:-} " in *" $package "*) ;; *) missing+=("$package") ;; esac
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "deps.sh ($profile): all packages present"
    exit 0
fi

echo "installing missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: installing needs root; run as root:" >&2
    echo "    apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
