"""The relayed wire benchmark's calls carry SDP: an offer in the caller's INVITE, the answer
in the gateway's 200 for it, every other message of the proxy benchmark's scenarios as it was."""

from __future__ import annotations

import re

import pytest

from bench.media_relay_wire import with_sdp
from bench.proxy.sipp import CALLER_SCENARIO, GATEWAY_SCENARIO


def messages(scenario: str) -> list[str]:
    """Each message's text (SIPp trims each line's indent), in the scenario's order."""
    found = re.findall(r"<!\[CDATA\[(.*?)\]\]>", scenario, re.DOTALL)
    return ["\n".join(line.strip() for line in text.strip().splitlines()) for text in found]


def test_the_callers_invite_carries_an_offer_and_nothing_else_changes() -> None:
    before = CALLER_SCENARIO.read_text()
    after = messages(with_sdp(before, "INVITE ", 6000))
    [invite, *others] = after
    headers, _, body = invite.partition("\n\n")
    assert headers.endswith("Content-Type: application/sdp\nContent-Length: [len]")
    assert body.splitlines()[0] == "v=0"
    assert "m=audio 6000 RTP/AVP 8" in body.splitlines()
    assert "Content-Length: 0" not in invite
    assert others == messages(before)[1:]


def test_the_gateways_answer_is_in_its_200_for_the_invite_not_the_byes() -> None:
    before = GATEWAY_SCENARIO.read_text()
    ringing, answer, bye_ok = messages(with_sdp(before, "SIP/2.0 200 ", 6002))
    assert "[last_Record-Route:]" in answer  # the INVITE's 200, not the BYE's
    assert answer.endswith("m=audio 6002 RTP/AVP 8\na=rtpmap:8 PCMA/8000")
    assert [ringing, bye_ok] == [messages(before)[0], messages(before)[2]]


def test_a_scenario_without_the_message_is_refused() -> None:
    with pytest.raises(ValueError, match="no message starts"):
        with_sdp(CALLER_SCENARIO.read_text(), "SIP/2.0 200 ", 6000)
