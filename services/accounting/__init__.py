"""Accounting: call records folded from the edges' call events, billed exactly once."""
