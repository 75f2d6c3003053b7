"""``python -m services.registrar``: the registrar service alone, against RabbitMQ and Redis."""

from services.registrar.service import RegistrarService
from shared.runner import main

main([RegistrarService], embedded_allowed=False)
