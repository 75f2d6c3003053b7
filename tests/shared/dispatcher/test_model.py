"""A dispatcher set as operators write it: its `mode` (proxy or B2BUA) and hostile values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.dispatcher import DispatcherSet

DESTINATIONS = [{"uri": "sip:192.0.2.9"}]


def test_a_sets_mode_is_unset_unless_given_proxy_or_b2bua() -> None:
    assert DispatcherSet.model_validate({"destinations": DESTINATIONS}).mode is None
    for mode in ("proxy", "b2bua"):
        given = DispatcherSet.model_validate({"destinations": DESTINATIONS, "mode": mode})
        assert given.mode == mode


def test_a_set_without_a_mode_is_written_as_before_the_field_existed() -> None:
    plain = DispatcherSet.model_validate({"destinations": DESTINATIONS})
    assert "mode" not in plain.model_dump(mode="json") and "mode" not in plain.model_dump_json()
    b2bua = DispatcherSet.model_validate({"destinations": DESTINATIONS, "mode": "b2bua"})
    assert DispatcherSet.model_validate_json(b2bua.model_dump_json()) == b2bua


@pytest.mark.parametrize("mode", ["relay", "B2BUA", "", 1, ["b2bua"], {"mode": "b2bua"}])
def test_any_other_mode_is_refused(mode: object) -> None:
    with pytest.raises(ValidationError, match="mode"):
        DispatcherSet.model_validate({"destinations": DESTINATIONS, "mode": mode})
