"""The health service's process-level shell; OPTIONS probing arrives with issue 7."""

from __future__ import annotations

from shared.service import Service


class HealthService(Service):
    name = "health"

    async def start(self) -> None:
        self.log.info("health ready")
