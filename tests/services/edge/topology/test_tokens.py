"""Keys and tokens: parsing the setting, rotation rules, secrets kept out of reprs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.edge.topology import InvalidTokenError, Keyring, TopologySettings, new_secret


def test_settings_parse_keys_and_never_show_them() -> None:
    secret = new_secret()
    settings = TopologySettings.model_validate({"keys": f"2:{secret}"})
    assert secret not in repr(settings)
    assert secret not in repr(settings.keyring().current)
    assert settings.keyring().current.key_id == 2


@pytest.mark.parametrize(
    "keys",
    [
        "",
        "nokey",
        "1:not-base64!",
        "1:AAAA",
        f"1:{new_secret()},1:{new_secret()}",
        "300:" + "A" * 43,
    ],
)
def test_bad_key_settings_are_refused(keys: str) -> None:
    with pytest.raises(ValidationError):
        TopologySettings.model_validate({"keys": keys})


def test_tokens_are_url_safe_unpadded_and_open_only_for_their_kind() -> None:
    ring = Keyring.parse(f"7:{new_secret()}")
    token = ring.seal(b"c", b"sip:1000@192.168.1.10")
    assert token.isascii()
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert ring.open(b"c", token) == b"sip:1000@192.168.1.10"
    with pytest.raises(InvalidTokenError):
        ring.open(b"v", token)
    with pytest.raises(InvalidTokenError) as raised:
        ring.open(b"c", token[:10])
    assert raised.value.status == 400
