"""``python -m services.health``: the health service alone, against RabbitMQ and Redis."""

from services.health.service import HealthService
from shared.runner import main

main([HealthService], embedded_allowed=False)
