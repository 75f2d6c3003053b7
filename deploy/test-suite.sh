#!/usr/bin/env bash
# `make test`'s pytest runs: usage `deploy/test-suite.sh PYTHON`.
#
# Why two processes: the failover labs (marker `lab`: a RabbitMQ cluster, Redis Sentinels, the
# VIP lab, two data centres) mostly wait on failover timers, the rest mostly computes.  So the
# labs run in a second pytest process beside the rest, and the suite takes about as long as the
# rest alone (docs/development.md, "The failover labs run beside the rest").  The labs' output
# (and the pure Python run's after them) is printed after the rest's, never interleaved, and any
# of the three failing fails the suite.  The processes, and every process they start, claim each
# port they hand out in one directory (CALLMESH_PORTS_DIR, deploy/labs/ports.py), so no two are
# ever given the same port.
set -uo pipefail
python=${1:?usage: deploy/test-suite.sh PYTHON}
run=$(mktemp -d "${TMPDIR:-/tmp}/callmesh-test.XXXXXX")
export CALLMESH_PORTS_DIR="$run/ports"
PURE_HEADER="==== the SIP and proxy cores' tests again, in pure Python (CALLMESH_NO_EXTENSIONS=1) ===="

# Beside the rest, one after the other: the labs, then the SIP and proxy cores' tests again in
# pure Python (the fallback; they compute for half a minute, and the labs end minutes before
# the rest).  `trap - INT`: a background job of a script ignores SIGINT, and pytest would then
# leave its labs' processes and namespaces behind on ^C; an interrupted labs run (pytest's exit
# 2) skips the pure Python one.  No cache plugin: one writer of .pytest_cache.
(
  trap - INT
  "$python" -m pytest -q --durations=30 -m lab -p no:cacheprovider
  labs=$?
  [ "$labs" -eq 2 ] && exit 2
  echo
  echo "$PURE_HEADER"
  CALLMESH_NO_EXTENSIONS=1 "$python" -m pytest -q -p no:cacheprovider tests/shared/sip tests/services/edge/proxy
  echo "$labs $?" >"$run/beside.status"
) </dev/null >"$run/beside.log" 2>&1 &
beside=$!
# ^C reached the labs too (one process group): let them clean up.  TERM reaches this script
# alone: its pytest is interrupted (INT, so that it cleans up) and the pure run skipped.
trap 'wait "$beside"; rm -rf "$run"; exit 130' INT
trap 'pkill -INT -P "$beside"; wait "$beside"; rm -rf "$run"; exit 143' TERM

# The rest on the compiled build (what ships).
"$python" -m pytest -q --durations=30 -m "not lab"
rest=$?
wait "$beside"
read -r labs pure <"$run/beside.status" 2>/dev/null || { labs=1; pure=1; }
echo
echo "==== the failover labs (pytest -m lab), run beside the above ===="
cat "$run/beside.log"
rm -rf "$run"
[ "$rest" -eq 0 ] && [ "$labs" -eq 0 ] && [ "$pure" -eq 0 ] && exit 0
failed="$([ "$rest" -eq 0 ] || echo " the suite")$([ "$labs" -eq 0 ] || echo " the labs")"
echo "make test: failed:$failed$([ "$pure" -eq 0 ] || echo " the pure Python run")" >&2
exit 1
