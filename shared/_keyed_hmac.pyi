"""HMAC-SHA256 from states keyed once, in C (`_keyed_hmac.c`), only in the compiled build."""

def hmac_states(padded: bytes, /) -> bytes:
    """The SHA-256 states after the 64-byte padded key's inner and outer blocks (64 bytes)."""

def hmac_digest(states: bytes, message: bytes, /) -> bytes:
    """The 32-byte HMAC-SHA256 of ``message`` from `hmac_states`' states."""

def compression() -> str:
    """The compression in use: ``"sha extensions"`` (the CPU's) or ``"portable"``."""

def use_sha_extensions(flag: bool, /) -> str:
    """Compress with the CPU's SHA extensions if ``flag`` and it has them; `compression()`."""
