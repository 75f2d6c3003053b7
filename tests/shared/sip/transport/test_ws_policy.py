"""The WebSocket upgrade policy's refusals: what of a client's own values they repeat."""

from __future__ import annotations

from wsproto.events import Request

from shared.sip.transport.ws_policy import SHOWN_CHARS, WebSocketPolicy, allowed_origins, shown


def upgrade(origin: str, subprotocols: list[str]) -> Request:
    return Request(
        host="edge.example",
        target="/",
        subprotocols=subprotocols,
        extra_headers=[(b"origin", origin.encode("latin-1"))],
    )


def test_a_huge_origin_is_repeated_clipped_in_the_body() -> None:
    policy = WebSocketPolicy(allowed_origins(["https://app.example.com"]))
    refusal = policy.judge(upgrade("https://evil.example/" + "a" * 16_000, ["sip"]))
    assert refusal is not None and refusal.status == 403
    body = refusal.response().split(b"\r\n\r\n", 1)[1]
    assert len(body) < 200
    assert b"(16021 characters)" in body


def test_offered_subprotocols_are_repeated_clipped() -> None:
    refusal = WebSocketPolicy().judge(upgrade("https://a.example", ["x" * 5_000, "chat"]))
    assert refusal is not None and refusal.status == 400
    assert len(refusal.text) < 200 and "(5006 characters)" in refusal.text


def test_control_characters_never_reach_the_text() -> None:
    assert shown("https://a.example\r\nX-Forged: 1") == "https://a.example??X-Forged: 1"
    assert shown("é\x00") == "??"


def test_a_short_value_is_repeated_whole() -> None:
    value = "h" * SHOWN_CHARS
    assert shown(value) == value
    assert shown(value + "h").endswith(f"… ({SHOWN_CHARS + 1} characters)")
