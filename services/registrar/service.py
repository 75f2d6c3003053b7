"""The registrar service's process-level shell; REGISTER handling arrives with issue 6."""

from __future__ import annotations

from shared.service import Service


class RegistrarService(Service):
    name = "registrar"

    async def start(self) -> None:
        self.log.info("registrar ready")
