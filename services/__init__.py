"""The Callmesh services; ``python -m services`` runs them all in one process.

`shared` comes first: it puts the compiled build of the hot modules (the proxy core among
them) on the import path before any service module loads (`shared/extensions.py`).
"""

import shared as shared
