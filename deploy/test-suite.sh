#!/usr/bin/env bash
# `make test`'s pytest runs: usage `deploy/test-suite.sh PYTHON`.
#
# Why several processes: the suite mostly waits (SIPp calls at a set rate, failover timers, idle
# NAT mappings), so the rest (marker `not lab`) runs as one pytest process per core, two at most,
# each a shard of the test files of about equal recorded time (deploy/test_shards.py,
# docs/development.md "Parallel pytest processes"); beside them, one process runs the failover
# labs (marker `lab`: a RabbitMQ cluster, Redis Sentinels, the VIP lab, two data centres, the
# full-scale keepalive runs) one after the other, and then the SIP and proxy cores' tests again
# in pure Python.  The labs never run beside each other: each loads the machine in bursts (a
# cluster starting, calls at a set rate).  CALLMESH_TEST_REST_SHARDS sets the rest's process
# count.  The first shard of the rest prints as it goes; the others' output is printed after
# it, in order, never interleaved, and any of them failing fails the suite, naming which, with
# the machine's state at the end (load, memory, the broker's alarms, queues and file handles,
# OOM kills).  Every process, and every process they start, claims each port it hands out in
# one directory (CALLMESH_PORTS_DIR, deploy/labs/ports.py), so no two are ever given the same
# port.
set -uo pipefail
python=${1:?usage: deploy/test-suite.sh PYTHON}
here=$(cd "$(dirname "$0")" && pwd)
cores=$(nproc 2>/dev/null || echo 1)
rest_shards=${CALLMESH_TEST_REST_SHARDS:-$((cores >= 2 ? 2 : 1))}
case $rest_shards in
  [1-8]) ;;
  *) echo "make test: CALLMESH_TEST_REST_SHARDS=$rest_shards is not a count from 1 to 8" >&2; exit 2 ;;
esac
run=$(mktemp -d "${TMPDIR:-/tmp}/callmesh-test.XXXXXX")
export CALLMESH_PORTS_DIR="$run/ports"
HEADER="==== the failover labs (pytest -m lab), run beside the above ===="
PURE_HEADER="==== the SIP and proxy cores' tests again, in pure Python (CALLMESH_NO_EXTENSIONS=1) ===="
rest_header() { echo "==== the rest's shard $1 of $rest_shards, run beside the above ===="; }

# shard KIND K N [PYTEST_OPTION...]: shard K of N of KIND's files (status 0 for a shard with no
# file).  Only the first shard of the rest writes .pytest_cache (one writer).
shard() {
  local kind=$1 k=$2 n=$3 marker="not lab" listed files
  shift 3
  [ "$kind" = lab ] && marker=lab
  # The listing's own failure fails the shard: an empty list from a crash must not pass.
  listed=$("$python" "$here/test_shards.py" "$kind" "$k" "$n") || return 1
  [ -z "$listed" ] && return 0
  mapfile -t files <<<"$listed"
  "$python" -m pytest -q --durations=30 -m "$marker" "$@" "${files[@]}"
}
# beside NAME COMMAND...: COMMAND in the background, its output and status kept.  `trap - INT`:
# a background job of a script ignores SIGINT, and pytest would then leave its labs' processes
# and namespaces behind on ^C.
beside() {
  local name=$1
  shift
  ( trap - INT; "$@"; echo $? >"$run/$name.status" ) </dev/null >"$run/$name.log" 2>&1 &
  pids+=($!)
}
labs_then_pure() {
  shard lab 1 1 -p no:cacheprovider
  local labs=$?
  echo "$labs" >"$run/labs.status"
  [ "$labs" -eq 2 ] && return 2  # interrupted: no pure Python run
  echo
  echo "$PURE_HEADER"
  CALLMESH_NO_EXTENSIONS=1 "$python" -m pytest -q -p no:cacheprovider tests/shared/sip tests/services/edge/proxy
}
# machine_state: what a failed run leaves to read (a starved or swapping machine, a broker in
# alarm or restarted, the kernel's OOM killer), a few lines.
machine_state() {
  echo "make test: the machine at the end: load $(cut -d' ' -f1-3 /proc/loadavg)," \
    "$(free -m | awk '/^Mem:/ {print $7 " MiB available of " $2}'), swap used" \
    "$(free -m | awk '/^Swap:/ {print $3}') MiB"
  timeout 30 rabbitmq-diagnostics -q alarms 2>&1 | sed 's/^/make test: RabbitMQ alarms: /' | head -5
  timeout 30 rabbitmqctl -q eval \
    '{queues, length(rabbit_amqqueue:list()), file_handle_cache:info()}.' 2>&1 \
    | sed 's/^/make test: RabbitMQ holds: /' | head -3
  timeout 10 dmesg 2>/dev/null | grep -iE "out of memory|oom-kill" | tail -3 | sed 's/^/make test: /'
}
echo "make test: $cores cores, the rest in $rest_shards shard(s), the labs beside them, then pure Python"
pids=()
for ((k = 2; k <= rest_shards; k++)); do
  beside "rest$k" shard rest "$k" "$rest_shards" -p no:cacheprovider
done
beside pure labs_then_pure
# ^C reached the background runs too (one process group): let them clean up.  TERM reaches this
# script alone: their pytest runs are interrupted (INT, so that they clean up).
trap 'wait "${pids[@]}"; rm -rf "$run"; exit 130' INT
trap 'for pid in "${pids[@]}"; do pkill -INT -P "$pid"; done; wait "${pids[@]}"; rm -rf "$run"; exit 143' TERM

# The rest's first shard on the compiled build (what ships), printing as it goes.
# An empty first shard of the rest means no test file at all: a failure, not a pass.
if [ -z "$("$python" "$here/test_shards.py" rest 1 "$rest_shards")" ]; then
  echo "make test: no test file under $(pwd)/tests" >&2
  rest=1
else
  shard rest 1 "$rest_shards"
  rest=$?
fi
wait "${pids[@]}"
status() { cat "$run/$1.status" 2>/dev/null || echo 1; }
for ((k = 2; k <= rest_shards; k++)); do
  echo
  rest_header "$k"
  cat "$run/rest$k.log"
  [ "$(status "rest$k")" -eq 0 ] || rest=1
done
labs=$(status labs) pure=$(status pure)
echo
echo "$HEADER"
cat "$run/pure.log"
rm -rf "$run"
[ "$rest" -eq 0 ] && [ "$labs" -eq 0 ] && [ "$pure" -eq 0 ] && exit 0
machine_state
failed="$([ "$rest" -eq 0 ] || echo " the suite")$([ "$labs" -eq 0 ] || echo " the labs")"
echo "make test: failed:$failed$([ "$pure" -eq 0 ] || echo " the pure Python run")" >&2
exit 1
