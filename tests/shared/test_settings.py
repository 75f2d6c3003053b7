import pytest
from pydantic import ValidationError

from shared.settings import ConfigError, ListenAddress, Settings, split_host_port


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("CALLMESH_RABBITMQ_URL", "CALLMESH_REDIS_URL", "CALLMESH_NAMESPACE"):
        monkeypatch.delenv(key, raising=False)
    settings = Settings()
    assert settings.rabbitmq_url is None and settings.redis_url is None
    assert settings.namespace == "callmesh"
    assert settings.http_address == ("127.0.0.1", 8080)
    assert settings.sip_addresses == (
        ListenAddress("udp", "127.0.0.1", 5060),
        ListenAddress("tcp", "127.0.0.1", 5060),
    )
    assert [str(entry.network) for entry in settings.trusted.entries] == ["127.0.0.0/8", "::1/128"]
    assert settings.digest_offer.for_realm("example.com") == ("MD5",)


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLMESH_NAMESPACE", "prod-eu")
    monkeypatch.setenv("CALLMESH_SIP_LISTEN", "udp:[::1]:5070, tcp:0.0.0.0:5080")
    settings = Settings()
    assert settings.namespace == "prod-eu"
    assert settings.sip_addresses == (
        ListenAddress("udp", "::1", 5070),
        ListenAddress("tcp", "0.0.0.0", 5080),
    )


def test_call_events_are_on_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALLMESH_CALL_EVENTS", raising=False)
    assert Settings().call_events is True
    monkeypatch.setenv("CALLMESH_CALL_EVENTS", "false")
    assert Settings().call_events is False


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CALLMESH_SIP_LISTEN", "sctp:127.0.0.1:5060"),
        ("CALLMESH_SIP_LISTEN", "udp:127.0.0.1"),
        ("CALLMESH_HTTP_LISTEN", "127.0.0.1:99999"),
        ("CALLMESH_TRUSTED_NETWORKS", "10.0.0.0/33"),
        ("CALLMESH_NAMESPACE", "has space"),
        ("CALLMESH_DIGEST_ALGORITHMS", "SHA-1"),
        ("CALLMESH_DIGEST_DOMAIN_ALGORITHMS", "example.com"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        Settings()


def test_split_host_port_handles_ipv6() -> None:
    assert split_host_port("[2001:db8::1]:5060") == ("2001:db8::1", 5060)
    assert split_host_port("example.com:80") == ("example.com", 80)


def test_open_api_needs_a_token() -> None:
    Settings(http_listen="127.0.0.1:8080").check_api_exposure()
    Settings(http_listen="[::1]:8080").check_api_exposure()
    Settings(http_listen="0.0.0.0:8080", api_token="secret").check_api_exposure()
    with pytest.raises(ConfigError, match="CALLMESH_API_TOKEN"):
        Settings(http_listen="0.0.0.0:8080").check_api_exposure()
