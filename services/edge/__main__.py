"""``python -m services.edge``: the edge service alone, against RabbitMQ and Redis."""

from services.edge.service import EdgeService
from shared.runner import main

main([EdgeService], embedded_allowed=False)
