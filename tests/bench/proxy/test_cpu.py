from __future__ import annotations

import subprocess
import sys

from bench.proxy.cpu import process_tree, tree_cpu_seconds, tree_cpu_times

# Burns CPU until it has used 0.2 s of user time itself, says so, then idles until stdin closes.
CHILD = """
import os, sys
while os.times()[0] < 0.2:
    pass
print("burnt", flush=True)
sys.stdin.read()
"""
# Forks the child, so the CPU sits one level below the process that is sampled.
PARENT = f"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", {CHILD!r}], stdin=subprocess.PIPE)
sys.stdin.read()
child.stdin.close()
child.wait()
"""


def test_tree_cpu_counts_the_descendants() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline() == "burnt\n"
        tree = process_tree(parent.pid)
        assert len(tree) == 2
        assert tree[0] == parent.pid
        user, system = tree_cpu_times(parent.pid)
        assert user >= 0.2  # the child's loop runs in user space
        assert tree_cpu_seconds(parent.pid) >= user + system - 0.02  # sampled a moment later
    finally:
        assert parent.stdin is not None
        parent.stdin.close()
        parent.wait()
