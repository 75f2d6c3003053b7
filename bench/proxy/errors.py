"""The one error the harness reports to its user as a single line."""


class BenchError(Exception):
    """A part of the benchmark could not run; the message says which and why."""
