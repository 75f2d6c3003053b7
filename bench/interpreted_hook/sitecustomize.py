"""Counts the Python functions a process runs interpreted, for `bench.interpreted_calls`.

Python imports a `sitecustomize` module found on its path at start-up; the benchmark puts
this folder first on the edge's ``PYTHONPATH`` and names a folder in
``CALLMESH_BENCH_INTERPRETED``.  Every entry into an interpreted function's frame on the
main thread (where the event loop runs) is counted: a call, or a coroutine's or
generator's resumption.  Compiled functions make no frame, so they are not.  The counts
are written to ``<folder>/<pid>`` twice a second: the benchmark reads them before and after
a run of calls.  Without the variable this does nothing.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from types import FrameType

FOLDER = os.environ.get("CALLMESH_BENCH_INTERPRETED")
COUNTS: Counter[str] = Counter()


def _count(frame: FrameType, event: str, _arg: object) -> None:
    if event == "call":
        code = frame.f_code
        name = code.co_qualname
        if code.co_filename == "<string>":  # a dataclass's generated method: name its class
            name = f"{type(frame.f_locals.get('self')).__name__}.{code.co_name}"
        COUNTS[f"{code.co_filename}:{code.co_firstlineno}:{name}"] += 1


def _write(folder: str) -> None:
    path = os.path.join(folder, str(os.getpid()))
    while True:
        time.sleep(0.5)
        lines = [f"{count}\t{where}\n" for where, count in list(COUNTS.items())]
        with open(f"{path}.tmp", "w") as out:
            out.writelines(lines)
        os.replace(f"{path}.tmp", path)


if FOLDER:
    sys.setprofile(_count)
    threading.Thread(target=_write, args=(FOLDER,), daemon=True).start()
