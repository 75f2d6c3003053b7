"""Access to the RFC 4475 / RFC 5118 torture messages copied under tests/data."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "data"


def rfc4475(name: str) -> bytes:
    return (DATA / "rfc4475" / f"{name}.dat").read_bytes()


def rfc5118(name: str, endings: str) -> bytes:
    """`endings` is "crlf" (wire form, `.dat`) or "lf" (the archive's own bytes)."""
    suffix = ".dat" if endings == "crlf" else ""
    return (DATA / "rfc5118" / endings / f"{name}{suffix}").read_bytes()


def manifest_4475() -> dict[str, str]:
    """File name (without .dat) → the RFC's category."""
    lines = (DATA / "rfc4475" / "MANIFEST.tsv").read_text().splitlines()[1:]
    return {line.split("\t")[0].removesuffix(".dat"): line.split("\t")[3] for line in lines}
