"""CALLMESH_RTPENGINE_FLAGS: Kamailio's notation into ng members; what the edge sets is refused."""

from __future__ import annotations

import pytest

from shared.rtpengine.flags import parse_flags
from shared.settings import Settings


def test_kamailio_words_become_ng_members() -> None:
    text = (
        "ICE=remove replace-origin replace-session-connection codec-strip-G722 codec-mask-all "
        "asymmetric RTP/AVP direction=priv direction=pub rtcp-mux-demux trust-address"
    )
    assert parse_flags(text) == {
        "ICE": "remove",
        "transport-protocol": "RTP/AVP",
        "replace": ["origin", "session-connection"],
        "codec": {"strip": ["G722"], "mask": ["all"]},
        "flags": ["asymmetric", "trust-address"],
        "direction": ["priv", "pub"],
        "rtcp-mux": ["demux"],
    }
    assert parse_flags("  ") == {}
    assert parse_flags("internal external") == {"direction": ["internal", "external"]}


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("call-id=x", "the edge sets call-id itself"),
        ("SDP=x", "the edge sets SDP itself"),
        ("=x", "expected KEY=VALUE"),
        ("ICE=", "expected KEY=VALUE"),
        ("codec-strip-", "names nothing"),
        ("replace-", "names nothing"),
    ],
)
def test_bad_words_are_refused_by_name(text: str, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        parse_flags(text)
    with pytest.raises(ValueError, match=said):
        Settings(rtpengine_flags=text)
