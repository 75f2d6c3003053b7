import pytest

from shared.settings import Settings
from shared.store.settings import StoreSettings
from shared.store.urls import SentinelUrl, parse_redis_url


def test_a_plain_url_is_passed_on_as_it_is() -> None:
    assert parse_redis_url(" redis://:pw@127.0.0.1:6379/2 ") == "redis://:pw@127.0.0.1:6379/2"
    assert parse_redis_url("unix:///run/redis.sock") == "unix:///run/redis.sock"


def test_the_sentinel_form_names_the_sentinels_the_service_and_the_database() -> None:
    url = parse_redis_url("redis+sentinel://h1:26380,h2,[::1]:26381/mymaster/3")
    assert url == SentinelUrl((("h1", 26380), ("h2", 26379), ("::1", 26381)), "mymaster", 3)


def test_the_sentinel_form_carries_the_servers_and_the_sentinels_passwords() -> None:
    url = parse_redis_url("redis+sentinel://app:s%40cret@h1/mymaster?sentinel_password=other")
    assert isinstance(url, SentinelUrl)
    assert (url.username, url.password, url.sentinel_password, url.db) == (
        "app",
        "s@cret",
        "other",
        0,
    )
    assert "cret" not in repr(url) and "other" not in repr(url)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("redis+sentinel://:secret@/mymaster", "at least one Sentinel host"),
        ("redis+sentinel://:secret@h1:26379", "hosts/service"),
        ("redis+sentinel://:secret@h1/a/b/c", "hosts/service"),
        ("redis+sentinel://:secret@h1/mymaster/x", "is a number"),
        ("redis+sentinel://:secret@h1:99999/mymaster", "bad Sentinel port"),
        ("redis+sentinel://:secret@h1/mymaster?secret=1", "unknown Sentinel URL parameter"),
        ("http://:secret@h1/", "unknown Redis URL scheme"),
        ("secret", "expected a redis://"),
    ],
)
def test_a_bad_url_is_refused_at_start_without_its_password(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as refused:
        Settings(redis_url=text)
    assert "secret@" not in str(refused.value) and ":secret" not in str(refused.value)


def test_replicas_are_waited_for_by_default_only_in_the_sentinel_form() -> None:
    assert StoreSettings().replicas_to_wait("redis://127.0.0.1/0") == 0
    assert StoreSettings().replicas_to_wait("redis+sentinel://h1/m") == 1
    assert StoreSettings(redis_wait_replicas=0).replicas_to_wait("redis+sentinel://h/m") == 0
    assert StoreSettings(redis_wait_replicas=2).replicas_to_wait("redis://h/0") == 2
