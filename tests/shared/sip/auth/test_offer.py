"""Which algorithms each realm's digest challenges offer (CALLMESH_DIGEST_*ALGORITHMS)."""

from __future__ import annotations

import pytest

from shared.sip.auth.offer import DigestOffer


def test_md5_alone_by_default_everywhere() -> None:
    offer = DigestOffer()
    assert offer.for_realm("example.com") == ("MD5",)


def test_a_domain_gets_its_own_list_in_its_order() -> None:
    offer = DigestOffer.parse("MD5", " Secure.Example.com = sha-256,MD5 ; new.org=SHA-256;")
    assert offer.for_realm("secure.example.com") == ("SHA-256", "MD5")
    assert offer.for_realm("new.org") == ("SHA-256",)
    assert offer.for_realm("example.com") == ("MD5",)


def test_the_old_values_of_the_default_still_work() -> None:
    for text, expected in [
        ("SHA-256,MD5", ("SHA-256", "MD5")),
        ("MD5,SHA-256", ("MD5", "SHA-256")),
    ]:
        assert DigestOffer.parse(text).for_realm("example.com") == expected


@pytest.mark.parametrize(
    ("default", "domains", "complaint"),
    [
        ("SHA-1", "", "unknown digest algorithm"),
        ("MD5,MD5", "", "twice"),
        ("", "", "unknown digest algorithm"),
        ("MD5", "example.com", "expected domain="),
        ("MD5", "=MD5", "expected domain="),
        ("MD5", "example.com=", "unknown digest algorithm"),
        ("MD5", "a.com=MD5;A.com=SHA-256", "given twice"),
    ],
)
def test_nonsense_is_refused_naming_what(default: str, domains: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        DigestOffer.parse(default, domains)
