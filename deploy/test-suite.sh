#!/usr/bin/env bash
# `make test`'s pytest runs: usage `deploy/test-suite.sh PYTHON`.
#
# Why two processes: the failover labs (marker `lab`: a RabbitMQ cluster, Redis Sentinels, the
# VIP lab, two data centres) mostly wait on failover timers, the rest mostly computes.  So the
# labs run in a second pytest process beside the rest, and the suite takes about as long as the
# rest alone (docs/development.md, "The failover labs run beside the rest").  The labs' output
# is printed after the rest's, never interleaved, and either failing fails the suite.  The two
# processes, and every process they start, claim each port they hand out in one directory
# (CALLMESH_PORTS_DIR, deploy/ports.py), so no two are ever given the same port.
set -uo pipefail
python=${1:?usage: deploy/test-suite.sh PYTHON}
run=$(mktemp -d "${TMPDIR:-/tmp}/callmesh-test.XXXXXX")
export CALLMESH_PORTS_DIR="$run/ports"

# `trap - INT`: a background job of a script ignores SIGINT, and pytest would then leave its
# labs' processes and namespaces behind on ^C.  No cache plugin: one writer of .pytest_cache.
(trap - INT; exec "$python" -m pytest -q --durations=30 -m lab -p no:cacheprovider) \
  </dev/null >"$run/lab.log" 2>&1 &
lab=$!
trap 'wait "$lab"; rm -rf "$run"; exit 130' INT  # ^C reached the labs too: let them clean up
trap 'kill -INT "$lab"; wait "$lab"; rm -rf "$run"; exit 143' TERM

# The rest on the compiled build (what ships), then the SIP and proxy cores' tests again in
# pure Python (the fallback).
"$python" -m pytest -q --durations=30 -m "not lab" \
  && CALLMESH_NO_EXTENSIONS=1 "$python" -m pytest -q tests/shared/sip tests/services/edge/proxy
rest=$?
wait "$lab"
labs=$?
echo
echo "==== the failover labs (pytest -m lab), run beside the above ===="
cat "$run/lab.log"
rm -rf "$run"
[ "$rest" -eq 0 ] && [ "$labs" -eq 0 ] && exit 0
echo "make test: failed:$([ "$rest" -eq 0 ] || echo " the suite")$([ "$labs" -eq 0 ] || echo " the labs")" >&2
exit 1
