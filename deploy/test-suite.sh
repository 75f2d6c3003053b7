#!/usr/bin/env bash
# `make test`'s pytest runs: usage `deploy/test-suite.sh PYTHON`.
#
# Why four processes: the suite mostly waits (SIPp calls at a set rate, failover timers, idle NAT
# mappings), so on two cores it takes about half the wall time when split.  The rest (marker
# `not lab`) runs as two pytest processes, the failover labs (marker `lab`: a RabbitMQ cluster,
# Redis Sentinels, the VIP lab, two data centres, the full-scale keepalive runs) as two more, each
# a shard of the test files of about equal recorded time (deploy/test_shards.py,
# docs/development.md "Four pytest processes"); after the second labs shard the SIP and proxy
# cores' tests run again in pure Python.  The first shard of the rest prints as it goes; the
# others' output is printed after it, in order, never interleaved, and any of them failing fails
# the suite, naming which.  Every process, and every process they start, claims each port it
# hands out in one directory (CALLMESH_PORTS_DIR, deploy/labs/ports.py), so no two are ever
# given the same port.
set -uo pipefail
python=${1:?usage: deploy/test-suite.sh PYTHON}
here=$(cd "$(dirname "$0")" && pwd)
run=$(mktemp -d "${TMPDIR:-/tmp}/callmesh-test.XXXXXX")
export CALLMESH_PORTS_DIR="$run/ports"
REST_HEADER="==== the rest's second shard, run beside the above ===="
HEADER="==== the failover labs (pytest -m lab), run beside the above ===="
PURE_HEADER="==== the SIP and proxy cores' tests again, in pure Python (CALLMESH_NO_EXTENSIONS=1) ===="

# shard KIND K [PYTEST_OPTION...]: shard K of 2 of KIND's files (status 0 for a shard with no
# file).  Only the first shard of the rest writes .pytest_cache (one writer).
shard() {
  local kind=$1 k=$2 marker="not lab" listed files
  shift 2
  [ "$kind" = lab ] && marker=lab
  # The listing's own failure fails the shard: an empty list from a crash must not pass.
  listed=$("$python" "$here/test_shards.py" "$kind" "$k" 2) || return 1
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
  shard lab 2 -p no:cacheprovider
  local labs=$?
  echo "$labs" >"$run/labs2.status"
  [ "$labs" -eq 2 ] && return 2  # interrupted: no pure Python run
  echo
  echo "$PURE_HEADER"
  CALLMESH_NO_EXTENSIONS=1 "$python" -m pytest -q -p no:cacheprovider tests/shared/sip tests/services/edge/proxy
}
pids=()
beside rest2 shard rest 2 -p no:cacheprovider
beside labs1 shard lab 1 -p no:cacheprovider
beside pure labs_then_pure
# ^C reached the background runs too (one process group): let them clean up.  TERM reaches this
# script alone: their pytest runs are interrupted (INT, so that they clean up).
trap 'wait "${pids[@]}"; rm -rf "$run"; exit 130' INT
trap 'for pid in "${pids[@]}"; do pkill -INT -P "$pid"; done; wait "${pids[@]}"; rm -rf "$run"; exit 143' TERM

# The rest's first shard on the compiled build (what ships), printing as it goes.
# An empty first shard of the rest means no test file at all: a failure, not a pass.
if [ -z "$("$python" "$here/test_shards.py" rest 1 2)" ]; then
  echo "make test: no test file under $(pwd)/tests" >&2
  rest=1
else
  shard rest 1
  rest=$?
fi
wait "${pids[@]}"
status() { cat "$run/$1.status" 2>/dev/null || echo 1; }
rest2=$(status rest2) labs1=$(status labs1) labs2=$(status labs2) pure=$(status pure)
echo
echo "$REST_HEADER"
cat "$run/rest2.log"
echo
echo "$HEADER"
cat "$run/labs1.log" "$run/pure.log"
rm -rf "$run"
suite=$((rest || rest2)) labs=$((labs1 || labs2))
[ "$suite" -eq 0 ] && [ "$labs" -eq 0 ] && [ "$pure" -eq 0 ] && exit 0
failed="$([ "$suite" -eq 0 ] || echo " the suite")$([ "$labs" -eq 0 ] || echo " the labs")"
echo "make test: failed:$failed$([ "$pure" -eq 0 ] || echo " the pure Python run")" >&2
exit 1
