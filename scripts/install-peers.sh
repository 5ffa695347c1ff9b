#!/usr/bin/env bash
# Install the third-party peers of tests/interop (docs/interop.md) when missing:
#   - Debian libcoap3-bin (coap-client/-server/-rd, notls and openssl builds), via apt as root;
#   - npm lwm2m-node-lib, pinned in tests/interop/node/package.json(+lock), via npm.
# It never fails the build: without root, network, apt or npm it says why, records the
# reason in tests/interop/.peers-status, and the interop tests skip quoting that reason.
set -u
cd "$(dirname "$0")/.."

STATUS=tests/interop/.peers-status
NODE_DIR=tests/interop/node
: >"$STATUS"

note() {
    echo "install-peers: $*"
    echo "$*" >>"$STATUS"
}

libcoap_missing() {
    local tool
    for tool in coap-client-notls coap-server-notls coap-server-openssl coap-rd-notls; do
        command -v "$tool" >/dev/null 2>&1 || return 0
    done
    return 1
}

apt_packages=()
libcoap_missing && apt_packages+=(libcoap3-bin)
command -v npm >/dev/null 2>&1 || apt_packages+=(nodejs npm)

if ((${#apt_packages[@]})); then
    if [ "$(id -u)" != 0 ]; then
        note "libcoap: not root, cannot apt-get install ${apt_packages[*]}"
    elif ! command -v apt-get >/dev/null 2>&1; then
        note "libcoap: no apt-get on this machine to install ${apt_packages[*]}"
    else
        echo "install-peers: apt-get install ${apt_packages[*]}"
        if ! { timeout 300 apt-get update -q >/dev/null &&
            DEBIAN_FRONTEND=noninteractive timeout 600 \
                apt-get install -y -q --no-install-recommends "${apt_packages[@]}" >/dev/null; }; then
            note "libcoap: apt-get install ${apt_packages[*]} failed (no network or no such package?)"
        fi
    fi
fi
libcoap_missing || echo "install-peers: libcoap $(coap-client-notls 2>&1 | head -1 | awk '{print $2}') present"

if [ -f "$NODE_DIR/node_modules/lwm2m-node-lib/package.json" ]; then
    echo "install-peers: lwm2m-node-lib present"
elif ! command -v npm >/dev/null 2>&1; then
    note "lwm2m-node-lib: npm not found (install nodejs and npm)"
else
    echo "install-peers: npm ci in $NODE_DIR"
    if ! (cd "$NODE_DIR" && timeout 600 npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
        note "lwm2m-node-lib: npm ci failed in $NODE_DIR (no network?)"
    fi
fi
exit 0
