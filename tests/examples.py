"""How many examples a property test draws: all in `make test`, a share in `make test-unit`.

The property tests are a third of the unit run's time; the quick run the
developer repeats draws ``CALLMESH_TEST_EXAMPLES`` (a fraction, set by
``make test-unit``) of each test's examples, the whole suite draws them all.
"""

from __future__ import annotations

import os

SCALE_VARIABLE = "CALLMESH_TEST_EXAMPLES"
FLOOR = 20
"""Never fewer than this: a property test with a handful of examples proves little."""


def examples(full: int, environ: dict[str, str] | None = None) -> int:
    """``full`` scaled by ``$CALLMESH_TEST_EXAMPLES`` (default 1), at least ``FLOOR``."""
    text = (os.environ if environ is None else environ).get(SCALE_VARIABLE, "1")
    try:
        scale = float(text)
    except ValueError:
        raise ValueError(f"{SCALE_VARIABLE}={text!r}: expected a fraction such as 0.25") from None
    if not 0 < scale <= 1:
        raise ValueError(f"{SCALE_VARIABLE}={text!r}: expected a fraction in (0, 1]")
    return max(min(FLOOR, full), round(full * scale))
