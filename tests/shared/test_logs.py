import json
import logging

from shared.logs import JsonFormatter


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("callmesh.test", logging.WARNING, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return record


def test_one_json_line_with_service_instance_and_fields() -> None:
    line = JsonFormatter("edge", "host-1", tracebacks=False).format(
        _record("bad packet", src="1.2.3.4")
    )
    assert "\n" not in line
    data = json.loads(line)
    assert data["service"] == "edge"
    assert data["instance"] == "host-1"
    assert data["msg"] == "bad packet"
    assert data["level"] == "warning"
    assert data["src"] == "1.2.3.4"


def test_exceptions_stay_on_one_line_without_traceback() -> None:
    try:
        raise ValueError("no Via")
    except ValueError:
        import sys

        record = _record("rejected")
        record.exc_info = sys.exc_info()
    line = JsonFormatter("edge", "i", tracebacks=False).format(record)
    data = json.loads(line)
    assert data["error"] == "ValueError: no Via"
    assert "traceback" not in data
    assert "\n" not in line
    with_tb = json.loads(JsonFormatter("edge", "i", tracebacks=True).format(record))
    assert "Traceback" in with_tb["traceback"]
