"""All-in-one: every service in one process (the embedded default of ``make run``).

``ALL_SERVICES`` is also what the generated API reference (``python -m deploy.docs``)
documents, so a service added here gets its page there too.
"""

from services.accounting.service import AccountingService
from services.edge.service import EdgeService
from services.health.service import HealthService
from services.registrar.service import RegistrarService
from services.routing.service import RoutingService
from shared.runner import main

ALL_SERVICES = (RoutingService, RegistrarService, HealthService, AccountingService, EdgeService)

if __name__ == "__main__":
    main(ALL_SERVICES, embedded_allowed=True)
