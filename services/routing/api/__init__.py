"""The routing service's HTTP routers (mounted under ``/v1`` by the app factory).

Each router is built by a function given the service's objects rather than
reaching for globals, so several services can live in one process (and tests).
"""
