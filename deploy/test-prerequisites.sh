#!/usr/bin/env bash
# `make test`'s set-up, so that a fresh machine needs nothing done by hand: the system programs
# the tests drive (deploy/test-packages.txt), then a reachable Redis, RabbitMQ and PostgreSQL —
# started here when they are local and not running. Anything it cannot provide stops it with one
# line naming it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

missing=()
while read -r command package; do
  case "$command" in ''|'#'*) continue ;; esac
  command -v "$command" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$command" >/dev/null 2>&1 \
    || missing+=("$package")
done < "$here/test-packages.txt"
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "make test: missing system packages: ${missing[*]} (install them as root: apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "make test: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin:/sbin"

# The browser test's page runs JsSIP from the npm registry, pinned by its package-lock.json.
page="$here/../tests/services/edge/webrtc"
npm ci --prefix "$page" --no-audit --no-fund --loglevel=error >/dev/null \
  || { echo "make test: npm ci failed in tests/services/edge/webrtc (JsSIP for the browser test)" >&2; exit 1; }

host_port() {  # URL -> "host port" (userinfo, path and brackets dropped)
  local rest=${1#*://}; rest=${rest##*@}; rest=${rest%%/*}
  local host=${rest%:*} port=${rest##*:}
  [ "$host" = "$rest" ] && port=$2
  host=${host#[}; echo "${host%]} $port"
}
reachable() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
local_address() { case "$1" in 127.*|localhost|::1) return 0 ;; *) return 1 ;; esac; }

ensure() {  # name url default-port start-command...
  local name=$1 url=$2 default_port=$3; shift 3
  read -r host port < <(host_port "$url" "$default_port")
  reachable "$host" "$port" && return 0
  if ! local_address "$host"; then
    echo "make test: $name is not reachable at $host:$port (set by its CALLMESH_TEST_… URL)" >&2
    exit 1
  fi
  echo "make test: starting $name on $host:$port"
  "$@" >/dev/null 2>&1 || true
  for _ in $(seq 1 90); do
    reachable "$host" "$port" && return 0
    sleep 1
  done
  echo "make test: $name did not come up on $host:$port within 90 s" >&2
  exit 1
}

redis_url=${CALLMESH_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}
read -r _ redis_port < <(host_port "$redis_url" 6379)
ensure Redis "$redis_url" 6379 \
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$redis_port" --save "" --appendonly no
ensure RabbitMQ "${CALLMESH_TEST_RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/}" 5672 \
  rabbitmq-server -detached
ensure PostgreSQL "${CALLMESH_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}" 5432 \
  bash -c 'pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start'
