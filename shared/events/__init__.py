"""Typed events that cross service boundaries, importable by publisher and consumer alike.

An event lives here (rather than in the service that emits it) when another
service must validate it too, so both sides read one definition.
"""
