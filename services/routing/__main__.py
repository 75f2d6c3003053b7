"""``python -m services.routing``: the routing service alone, against RabbitMQ and Redis."""

from services.routing.service import RoutingService
from shared.runner import main

main([RoutingService], embedded_allowed=False)
