"""SIP transports: where bytes go (`destination`, sans-IO) and asyncio adapters (udp, tcp, tls).

Import the submodules directly; this package does not import asyncio so the
sans-IO transaction layer can use `destination` without pulling it in.
"""
