"""The proxy core, sans-IO: parsed messages and the clock in, messages to send and events out.

`Proxy` (in `core`) is the entry point; the asyncio side (`services.edge.runtime.driver`)
only moves bytes and time in and out of it.
"""
