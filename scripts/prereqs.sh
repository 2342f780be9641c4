#!/bin/sh
# Installs (as root) or names (otherwise) the system packages Mizzen needs:
# iproute2 (ip netns), iptables (capture and service NAT), util-linux (setpriv)
# and python3-venv where the interpreter cannot create virtual environments.
# WITH_LOAD_TOOLS=1 adds the benchmarks' load generator and server (hey,
# nginx-light) and the packet capture the mTLS tests read (tcpdump);
# `make test` and `make bench` ask for them.
set -eu

PY="${PYTHON:-python3}"
missing=""
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
command -v iptables >/dev/null 2>&1 || missing="$missing iptables"
command -v setpriv >/dev/null 2>&1 || missing="$missing util-linux"
if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing="$missing python3-venv"
fi
if [ "${WITH_LOAD_TOOLS:-0}" = 1 ]; then
    command -v hey >/dev/null 2>&1 || missing="$missing hey"
    command -v nginx >/dev/null 2>&1 || missing="$missing nginx-light"
    command -v tcpdump >/dev/null 2>&1 || missing="$missing tcpdump"
fi

[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages:$missing"
    apt-get update -qq
    # nginx's package would start a system-wide nginx on port 80: the
    # benchmarks run their own inside pods, so keep services from starting.
    guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        guard=1
    fi
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    [ -n "$guard" ] && rm -f /usr/sbin/policy-rc.d
    true
else
    echo "missing system packages:$missing" >&2
    echo "install them with: sudo apt-get install -y$missing" >&2
    exit 1
fi
