"""Subscriber names the admin API accepts: SIP user parts (RFC 3261 ``user``) with sane bounds."""

from __future__ import annotations

import pytest

from shared.registrar.names import check_domain, check_subscriber_id, check_user


@pytest.mark.parametrize(
    "user",
    [
        "alice",
        "john.doe",
        "+14075551234",
        "+1407;phone-context=example.com",  # user-unreserved ; and =
        "a-b_c!~*'()&=+$,?",
        "bob%40corp.com",  # an escape of what cannot be written plainly
        "x%20y",
        "a" * 64,
    ],
)
def test_sip_user_parts_are_accepted(user: str) -> None:
    assert check_user(user) == user


@pytest.mark.parametrize(
    ("user", "reason"),
    [
        ("", "1 to 64 characters"),
        ("a" * 65, "1 to 64 characters"),
        ("a" * 5000, "1 to 64 characters"),
        ("%2e%2e", "%2e stands for '.'"),  # decodes to ..
        ("%2E", "%2E stands for '.'"),
        ("a%61", "%61 stands for 'a'"),  # non-canonical: the same SIP user as "aa"
        ("..", "'..'"),
        (".", "'..'"),
        ("a..b", "'..'"),
        ("a/b", "'/' is not allowed"),
        ("a%2Fb", "%2F is not allowed"),
        ("a%2fb", "%2f is not allowed"),
        ("a%00", "%00 is not allowed"),
        ("a%0A", "%0A is not allowed"),
        ("a%7F", "%7F is not allowed"),
        ("a%C0%AF", "%C0 is not allowed"),  # overlong UTF-8 for /
        ("a%2", "two hex digits"),
        ("a%zz", "two hex digits"),
        ("a\nb", "'\\n' is not allowed"),
        ("a b", "' ' is not allowed"),
        ("a@b", "'@' is not allowed"),
    ],
)
def test_hostile_user_parts_are_refused_with_the_reason(user: str, reason: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        check_user(user)
    assert reason in str(caught.value)


@pytest.mark.parametrize("domain", ["example.com", "EXAMPLE.com", "a", "10.0.0.1", "x-y.example"])
def test_host_names_are_domains(domain: str) -> None:
    assert check_domain(domain) == domain


@pytest.mark.parametrize(
    "domain", ["", "bad domain", "a..b", "-a.com", "a-.com", "a." * 127 + "a", "a" * 64, "a/b"]
)
def test_other_domains_are_refused(domain: str) -> None:
    with pytest.raises(ValueError, match="host name"):
        check_domain(domain)


def test_a_subscriber_id_is_a_user_and_an_optional_domain() -> None:
    assert check_subscriber_id("bob%40corp.com@example.com") == "bob%40corp.com@example.com"
    assert check_subscriber_id("alice") == "alice"
    with pytest.raises(ValueError, match="host name"):
        check_subscriber_id("alice@")
    with pytest.raises(ValueError, match=r"'\.\.'"):
        check_subscriber_id("..@example.com")
