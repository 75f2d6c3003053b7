"""Callmesh's common package: the SIP stack, the bus, the store, settings and API helpers.

Every service imports from here; nothing here imports a service.
"""
