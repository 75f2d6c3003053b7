"""Callmesh's common package: the SIP stack, the bus, the store, settings and API helpers.

Every service imports from here; nothing here imports a service.  Importing it first loads
the compiled build of the hot modules when it matches their sources (`shared/extensions.py`).
"""

from shared import extensions as extensions
