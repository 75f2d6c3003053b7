"""One JSON line per log event on stdout, tagged with service and instance.

Operators feed these lines to a log pipeline; a line must stay one line, so
exceptions are reduced to their type and message (the traceback only at DEBUG).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "color_message",  # uvicorn's ANSI-coloured copy of msg
}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, instance: str, *, tracebacks: bool) -> None:
        super().__init__()
        self.service = service
        self.instance = instance
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": getattr(record, "service", self.service),
            "instance": self.instance,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key != "service":
                line[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            line["error"] = f"{type(error).__name__}: {error}"
            if self.tracebacks:
                line["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(service: str, instance: str, level: str = "INFO") -> None:
    """Send every logger's records to stdout as JSON; call once per process."""
    handler = logging.StreamHandler(sys.stdout)
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    handler.setFormatter(JsonFormatter(service, instance, tracebacks=numeric <= logging.DEBUG))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    logging.captureWarnings(True)  # a Python warning is one JSON line too
    root.setLevel(numeric)
    logging.Formatter.converter = time.gmtime
    for noisy in ("aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
