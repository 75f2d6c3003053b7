"""The record-route key: configured, or generated once per deployment in the real Redis."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.edge.proxy.dialogs import RecordRouteSigner
from services.edge.runtime.record_route_keys import record_route_key_name, record_route_keyring
from services.edge.topology import new_secret
from shared.settings import Settings
from shared.store import Store


@pytest.mark.integration
async def test_unset_every_edge_and_every_restart_gets_the_one_stored_key(
    redis_store: Store,
) -> None:
    settings = Settings()
    first = RecordRouteSigner(await record_route_keyring(settings, redis_store))
    again = RecordRouteSigner(await record_route_keyring(settings, redis_store))  # another edge
    token = first.sign("call-1", None)
    assert token.startswith("0.")
    assert again.verify(token, "call-1", None)
    stored = await redis_store.redis.get(record_route_key_name(redis_store))
    assert stored is not None and record_route_key_name(redis_store).endswith(
        ":edge:record-route-key"
    )


@pytest.mark.integration
async def test_configured_keys_win_and_may_list_the_stored_one_as_previous(
    redis_store: Store,
) -> None:
    stored = RecordRouteSigner(await record_route_keyring(Settings(), redis_store))
    old_token = stored.sign("call-1", None)
    value = await redis_store.redis.get(record_route_key_name(redis_store))
    assert isinstance(value, bytes)
    configured = Settings(record_route_keys=f"1:{new_secret()},0:{value.decode()}")
    signer = RecordRouteSigner(await record_route_keyring(configured, redis_store))
    assert signer.sign("call-1", None).startswith("1.")
    assert signer.verify(old_token, "call-1", None)  # calls in progress keep working


@pytest.mark.parametrize("variable", ["record_route_keys", "topology_keys"])
@pytest.mark.parametrize(
    "value",
    ["", "nokey", "1:not-base64!", "1:AAAA", "300:" + "A" * 43, "x:" + "A" * 43, "one,two,three"],
)
def test_a_bad_key_list_stops_the_settings_without_showing_the_key(
    variable: str, value: str
) -> None:
    secret_part = value.partition(":")[2]
    with pytest.raises(ValidationError) as raised:
        Settings.model_validate({variable: value})
    text = str(raised.value)
    assert variable in text
    assert not secret_part or secret_part not in text


def test_the_same_id_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="different ids"):
        Settings(record_route_keys=f"1:{new_secret()},1:{new_secret()}")
