"""``docs/api.md``: every HTTP route of every service, rendered from its OpenAPI document.

Each service's routers are built as its process builds them, on an in-memory bus
and a Redis client that never connects (building a router does no I/O), and
mounted by the same app factory, so the page shows exactly what a process serves:
paths, parameters, bodies, responses and which routes need the bearer token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from shared.api import create_app
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.service import Runtime, Service
from shared.settings import Settings
from shared.store import Store

Schema = Mapping[str, Any]

SERVICE_PREFIX = "/v1/"
"""Where the app factory mounts every service router; the rest is the process's own."""
BOUNDS = (
    ("minimum", "≥"),
    ("exclusiveMinimum", ">"),
    ("maximum", "≤"),
    ("exclusiveMaximum", "<"),
    ("minLength", "length ≥"),
    ("maxLength", "length ≤"),
)

TOKEN_NOTE = "bearer token (`Authorization: Bearer $CALLMESH_API_TOKEN`) when one is set"
HEADER = """\
# HTTP API reference

Generated from the services' FastAPI apps by `python -m deploy.docs api`: do not
edit by hand (`tests/deploy/docs/test_api.py` fails when this page is stale).
Every process serves the routes under "Every process" and, under `/v1`, those of
the services it runs (the all-in-one: all of them). The same document, live, is
`GET /openapi.json` on a running process (`/metrics` needs no token with
`CALLMESH_METRICS_PUBLIC=true`). Errors: 401 without the token, 413 for a body
over `CALLMESH_API_MAX_BODY`, 422 naming each bad field ([operations](operations.md)).
"""


def service_openapi(service_type: type[Service]) -> dict[str, Any]:
    """The OpenAPI document of one service's routers, built without starting it."""
    settings = Settings.model_construct()  # the defaults, whatever the environment says
    store = Store(aioredis.Redis(), "docs")  # never used: a client connects on first command
    bus = MemoryBus(MemoryBroker(), "docs", service_type.name, "docs")
    runtime = Runtime(settings, bus, store, logging.getLogger("callmesh.docs"))
    service = service_type(runtime)
    app = create_app(f"Callmesh {service_type.name}", service.routers(), [], "token")
    return app.openapi()


def process_openapi() -> dict[str, Any]:
    """The routes every process serves whatever its services: probes and metrics."""
    return create_app("Callmesh", [], [], "token").openapi()


def render_api(common: Schema, services: Sequence[tuple[str, Schema]]) -> str:
    parts = [HEADER, "## Every process\n", *_operations(common, services=False)]
    for name, document in services:
        parts.append(f"## {name}\n")
        parts.extend(_operations(document, services=True))
    schemas: dict[str, Schema] = {}
    for _, document in [("", common), *services]:
        schemas.update(document.get("components", {}).get("schemas", {}))
    parts.append("## Bodies\n")
    parts.extend(_schema(name, schemas[name]) for name in sorted(schemas))
    return "\n".join(parts).rstrip() + "\n"


def _operations(document: Schema, *, services: bool) -> Iterable[str]:
    """The routes under ``/v1`` (a service's) or the others (every process's)."""
    for path, methods in document.get("paths", {}).items():
        if path.startswith(SERVICE_PREFIX) != services:
            continue
        for method, operation in methods.items():
            yield _operation(method.upper(), path, operation)


def _operation(method: str, path: str, operation: Schema) -> str:
    lines = [f"### `{method} {path}`\n"]
    summary = operation.get("summary", "")
    description = operation.get("description", "").strip()
    lines.append(description or f"{summary}.")
    auth = TOKEN_NOTE if operation.get("security") else "none"
    lines.append(f"\n- Auth: {auth}")
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "header" and parameter["name"].lower() == "authorization":
            continue
        required = "required" if parameter.get("required") else "optional"
        text = _describe(parameter.get("schema", {}), parameter.get("description"))
        lines.append(f"- {parameter['in']} `{parameter['name']}` ({required}): {text}")
    body = operation.get("requestBody")
    if body:
        for media, content in body.get("content", {}).items():
            lines.append(f"- Body (`{media}`): {_type(content.get('schema', {}))}")
    for status, response in operation.get("responses", {}).items():
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        shape = f" — {_type(schema)}" if schema else ""
        lines.append(f"- {status}: {response.get('description', '')}{shape}")
    return "\n".join(lines) + "\n"


def _schema(name: str, schema: Schema) -> str:
    lines = [f"### {name}\n"]
    if schema.get("description"):
        lines.append(schema["description"].strip() + "\n")
    properties = schema.get("properties", {})
    if not properties:
        lines.append(f"{_type(schema)}\n")
        return "\n".join(lines)
    required = set(schema.get("required", ()))
    explained = any("description" in spec for spec in properties.values())
    columns = ["field", "type", "required", "default"] + (["meaning"] if explained else [])
    lines += ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for field, spec in properties.items():
        row = [f"`{field}`", _type(spec), "yes" if field in required else ""]
        row.append(f"`{_json(spec['default'])}`" if "default" in spec else "")
        if explained:
            row.append(" ".join(spec.get("description", "").split()).replace("|", "\\|"))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _json(value: Any) -> str:
    """A value as JSON spells it (``false``, ``null``, ``5`` for ``5.0``)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value)


def _describe(schema: Schema, description: str | None) -> str:
    text = _type(schema)
    if "default" in schema:
        text += f", default `{_json(schema['default'])}`"
    return f"{text}; {' '.join(description.split())}" if description else text


def _type(schema: Schema) -> str:
    """A short, readable type: `Gateway`, `list[str]`, `int ≥ 0`, `"a" | "b"`."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        return " \\| ".join(_type(option) for option in schema["anyOf"])
    if "enum" in schema:
        return " \\| ".join(f"`{_json(value)}`" for value in schema["enum"])
    if "const" in schema:
        return f"`{_json(schema['const'])}`"
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list[{_type(schema.get('items', {}))}]"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"dict[str, {_type(schema['additionalProperties'])}]"
    bounds = [f"{sign} {_json(schema[key])}" for key, sign in BOUNDS if key in schema]
    if "pattern" in schema:
        bounds.append(f"matching `{schema['pattern']}`".replace("|", "\\|"))  # in a table
    return " ".join([f"{kind}", ", ".join(bounds)]).strip()
