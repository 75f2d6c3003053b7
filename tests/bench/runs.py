"""A benchmark run as `python -m bench.NAME` runs it, for the tests that run one small."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def printed_by(module: str, *arguments: str, timeout: float) -> str:
    """What `module` printed; a failed run raises, with its exit status."""
    return subprocess.check_output(
        [sys.executable, "-m", module, *arguments], cwd=REPO_ROOT, text=True, timeout=timeout
    )
