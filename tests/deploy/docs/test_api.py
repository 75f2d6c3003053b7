"""docs/api.md is what the services serve: regenerated in memory, compared with the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.docs import __main__ as docs_cli
from deploy.docs.api import render_api


def test_docs_api_md_is_current() -> None:
    page = docs_cli.API_PAGE.read_text()
    assert page == docs_cli.api_page(), "docs/api.md is stale: run python -m deploy.docs api"


def test_every_service_and_its_routes_are_on_the_page() -> None:
    page = docs_cli.api_page()
    for heading in ("## routing", "## registrar", "## health", "## edge", "## Every process"):
        assert f"\n{heading}\n" in page
    for route in (
        "`PUT /v1/gateways/{record_id}`",
        "`POST /v1/rules:import`",
        "`PUT /v1/subscribers/{subscriber_id}`",
        "`POST /v1/targets/{target_id}:disable`",
        "`GET /v1/protection/blocks`",
        "`GET /livez`",
    ):
        assert route in page


FAKE: dict[str, Any] = {
    "paths": {
        "/livez": {"get": {"summary": "Livez", "responses": {"200": {"description": "OK"}}}},
        "/v1/things/{thing_id}": {
            "put": {
                "summary": "Put Thing",
                "description": "Create or replace a thing.",
                "security": [{"HTTPBearer": []}],
                "parameters": [
                    {
                        "name": "thing_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^(a|b)$"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "description": "at most this many",
                        "schema": {"type": "integer", "minimum": 1.0, "default": 10},
                    },
                ],
                "requestBody": {
                    "content": {"application/json": {"schema": {"$ref": "#/c/s/Thing"}}}
                },
                "responses": {
                    "200": {
                        "description": "Done",
                        "content": {
                            "application/json": {
                                "schema": {"type": "array", "items": {"type": "string"}}
                            }
                        },
                    },
                },
            }
        },
    },
    "components": {
        "schemas": {
            "Thing": {
                "description": "A thing.",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "description": "what it is | called"},
                    "enabled": {"type": "boolean", "default": True},
                    "kind": {"anyOf": [{"enum": ["x", "y"]}, {"type": "null"}]},
                },
            }
        }
    },
}


def test_a_route_is_rendered_with_auth_parameters_body_and_responses() -> None:
    page = render_api(FAKE, [("things", FAKE)])
    route = page.split("### `PUT /v1/things/{thing_id}`\n", 1)[1].split("\n## ", 1)[0]
    assert route.splitlines()[:4] == [
        "",
        "Create or replace a thing.",
        "",
        "- Auth: bearer token (`Authorization: Bearer $CALLMESH_API_TOKEN`) when one is set",
    ]
    assert "- path `thing_id` (required): string matching `^(a\\|b)$`" in route
    assert "- query `limit` (optional): integer ≥ 1, default `10`; at most this many" in route
    assert "- Body (`application/json`): [Thing](#thing)" in route
    assert "- 200: Done — list[string]" in route
    common = page.split("## things", 1)[0]
    assert "### `GET /livez`\n\nLivez.\n\n- Auth: none\n- 200: OK" in common
    assert "/v1/things" not in common  # the common part shows only what every process serves


def test_a_body_is_a_table_of_its_fields() -> None:
    page = render_api(FAKE, [])
    table = page.split("### Thing\n", 1)[1]
    assert table.splitlines()[:6] == [
        "",
        "A thing.",
        "",
        "| field | type | required | default | meaning |",
        "| --- | --- | --- | --- | --- |",
        "| `name` | string | yes |  | what it is \\| called |",
    ]
    assert "| `enabled` | boolean |  | `true` |  |" in table
    assert '| `kind` | `"x"` \\| `"y"` \\| null |  |  |  |' in table


def test_check_reports_a_stale_page_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "docs" / "api.md"
    page.parent.mkdir()
    page.write_text("old\n")
    monkeypatch.setattr(docs_cli, "ROOT", tmp_path)
    monkeypatch.setattr(docs_cli, "PAGES", {"api": (page, lambda: "new\n")})
    assert docs_cli.main(["api", "--check"]) == 1
    assert "docs/api.md is stale: run python -m deploy.docs api" in capsys.readouterr().out
    assert page.read_text() == "old\n"
    assert docs_cli.main(["api"]) == 0
    assert page.read_text() == "new\n"
    assert docs_cli.main(["--check"]) == 0
