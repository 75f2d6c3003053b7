"""rtpengine options as an operator writes them, turned into the ng dictionary's members.

``CALLMESH_RTPENGINE_FLAGS`` takes Kamailio's and OpenSIPS' notation, the words
those users already put in ``rtpengine_offer("…")``, space-separated:

- ``KEY=VALUE``: that member, e.g. ``ICE=remove``, ``DTLS=off``, ``SDES=off``,
  ``address-family=IP4``; ``direction=NAME`` may be given twice (a list);
- ``replace-X``, ``rtcp-mux-X``: ``X`` added to the ``replace`` / ``rtcp-mux`` list;
- ``codec-strip-X``, ``codec-mask-X``, ``codec-offer-X``, ``codec-transcode-X``,
  ``codec-except-X``: ``X`` added to that list of the ``codec`` dictionary;
- a transport protocol (``RTP/AVP``, ``RTP/SAVPF``, ``UDP/TLS/RTP/SAVPF``…): ``transport-protocol``;
- ``internal`` / ``external``: short for ``direction=internal`` / ``direction=external``;
- any other word (``asymmetric``, ``symmetric``, ``trust-address``, ``SIP-source-address``,
  ``strict-source``, ``port-latching``…): added to ``flags``, for rtpengine to judge.

The members the edge sets itself per call (``call-id``, ``from-tag``, ``to-tag``,
``sdp``, ``command``) cannot be given: ``ValueError`` names the word.
"""

from __future__ import annotations

from typing import Final

from shared.rtpengine.bencode import Encodable

_OURS: Final = frozenset({"call-id", "from-tag", "to-tag", "sdp", "command", "via-branch"})
_LISTS: Final = ("replace-", "rtcp-mux-")
_CODEC_LISTS: Final = ("strip", "mask", "offer", "transcode", "except")
_PROTOCOLS: Final = frozenset(
    {"RTP/AVP", "RTP/SAVP", "RTP/AVPF", "RTP/SAVPF", "UDP/TLS/RTP/SAVP", "UDP/TLS/RTP/SAVPF"}
)


def parse_flags(text: str) -> dict[str, Encodable]:
    """The ng members ``text`` asks for (empty for empty text); ``ValueError`` says which word
    is wrong."""
    lists: dict[str, list[str]] = {}
    codec: dict[str, list[str]] = {}
    members: dict[str, Encodable] = {}
    for word in text.split():
        key, equals, value = word.partition("=")
        if equals:
            if not key or not value:
                raise ValueError(f"rtpengine flag {word!r}: expected KEY=VALUE")
            if key.lower() in _OURS:
                raise ValueError(f"rtpengine flag {word!r}: the edge sets {key} itself")
            if key == "direction":
                lists.setdefault("direction", []).append(value)
            else:
                members[key] = value
        elif word in _PROTOCOLS:
            members["transport-protocol"] = word
        elif word in ("internal", "external"):
            lists.setdefault("direction", []).append(word)
        elif word.startswith(_LISTS):
            prefix = _LISTS[0] if word.startswith(_LISTS[0]) else _LISTS[1]
            lists.setdefault(prefix[:-1], []).append(_nonempty(word[len(prefix) :], word))
        elif word.startswith("codec-") and word.split("-")[1] in _CODEC_LISTS:
            _, kind, item = word.split("-", 2)
            codec.setdefault(kind, []).append(_nonempty(item, word))
        else:
            lists.setdefault("flags", []).append(word)
    members.update(lists)
    if codec:
        members["codec"] = dict(codec)
    return members


def _nonempty(item: str, word: str) -> str:
    if not item:
        raise ValueError(f"rtpengine flag {word!r}: names nothing")
    return item
