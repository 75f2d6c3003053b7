"""All-in-one: every service in one process (the embedded default of ``make run``)."""

from services.accounting.service import AccountingService
from services.edge.service import EdgeService
from services.health.service import HealthService
from services.registrar.service import RegistrarService
from services.routing.service import RoutingService
from shared.runner import main

main(
    [RoutingService, RegistrarService, HealthService, AccountingService, EdgeService],
    embedded_allowed=True,
)
