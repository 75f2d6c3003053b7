import pytest
from pydantic import ValidationError

from shared.settings import (
    ConfigError,
    ListenAddress,
    Settings,
    parse_client_certs,
    split_host_port,
)


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


def test_a_tls_listener_needs_a_certificate_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLMESH_SIP_LISTEN", "udp:127.0.0.1:5060,tls:[::1]:5061")
    monkeypatch.delenv("CALLMESH_TLS_CERT", raising=False)
    monkeypatch.setenv("CALLMESH_TLS_KEY", "/etc/callmesh/edge.key")
    with pytest.raises(ValidationError, match="CALLMESH_TLS_CERT and CALLMESH_TLS_KEY"):
        Settings()
    monkeypatch.setenv("CALLMESH_TLS_CERT", "/etc/callmesh/edge.crt")
    settings = Settings()
    assert settings.sip_addresses[1] == ListenAddress("tls", "::1", 5061)
    assert (settings.tls_handshake_timeout, settings.tls_idle_timeout) == (5.0, 300.0)


def test_client_certificates_are_named_pairs_of_absolute_paths() -> None:
    text = "carrier1=/etc/c1.crt:/etc/c1.key; carrier-2 = /etc/c2.pem : /etc/c2.key ;"
    assert parse_client_certs(text) == {
        "carrier1": ("/etc/c1.crt", "/etc/c1.key"),
        "carrier-2": ("/etc/c2.pem", "/etc/c2.key"),
    }
    for bad in ("carrier1=/etc/c1.crt", "=/a:/b", "c1=a.crt:/b.key", "c 1=/a:/b"):
        with pytest.raises(ValueError, match="certificate"):
            parse_client_certs(bad)


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
        ("CALLMESH_SIP_LISTEN", "wss:127.0.0.1:443"),
        ("CALLMESH_TLS_HANDSHAKE_TIMEOUT", "0"),
        ("CALLMESH_HTTP_LISTEN", "127.0.0.1:99999"),
        ("CALLMESH_TRUSTED_NETWORKS", "10.0.0.0/33"),
        ("CALLMESH_NAMESPACE", "has space"),
        ("CALLMESH_DIGEST_ALGORITHMS", "SHA-1"),
        ("CALLMESH_DIGEST_DOMAIN_ALGORITHMS", "example.com"),
        ("CALLMESH_MEDIA_RELAY_DOMAINS", "retail.example=maybe"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    "wide", ["0.0.0.0/0", "10.0.0.0/8,198.51.100.7/0", "udp:::/0", "2001::/31"]
)
def test_trusting_a_share_of_the_internet_is_refused(
    monkeypatch: pytest.MonkeyPatch, wide: str
) -> None:
    monkeypatch.setenv("CALLMESH_TRUSTED_NETWORKS", wide)
    with pytest.raises(ValidationError, match="without digest; trust it through /v1/peers"):
        Settings()


def test_trusting_an_operators_own_wide_network_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLMESH_TRUSTED_NETWORKS", "10.0.0.0/8,2001:db8::/32")
    assert [str(e.network) for e in Settings().trusted.entries] == ["10.0.0.0/8", "2001:db8::/32"]


def test_websocket_listeners_are_read_and_wss_needs_the_certificate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CALLMESH_SIP_LISTEN", "udp:127.0.0.1:5060,ws:127.0.0.1:8080")
    assert [a.transport for a in Settings().sip_addresses] == ["udp", "ws"]
    monkeypatch.setenv("CALLMESH_SIP_LISTEN", "udp:127.0.0.1:5060,wss:127.0.0.1:8443")
    with pytest.raises(ValidationError, match="has a wss: listener: set CALLMESH_TLS_CERT"):
        Settings()
    monkeypatch.setenv("CALLMESH_TLS_CERT", "/etc/callmesh/edge.pem")
    monkeypatch.setenv("CALLMESH_TLS_KEY", "/etc/callmesh/edge.key")
    assert Settings().sip_addresses[1].transport == "wss"


def test_split_host_port_handles_ipv6() -> None:
    assert split_host_port("[2001:db8::1]:5060") == ("2001:db8::1", 5060)
    assert split_host_port("example.com:80") == ("example.com", 80)


def test_open_api_needs_a_token() -> None:
    Settings(http_listen="127.0.0.1:8080").check_api_exposure()
    Settings(http_listen="[::1]:8080").check_api_exposure()
    Settings(http_listen="0.0.0.0:8080", api_token="secret").check_api_exposure()
    with pytest.raises(ConfigError, match="CALLMESH_API_TOKEN"):
        Settings(http_listen="0.0.0.0:8080").check_api_exposure()


@pytest.mark.parametrize(
    "text",
    ["amqp://u:secret@a:5672/,http://u:secret@b/", " , ", "amqp://u:secret@a/,amqps://"],
)
def test_a_bad_cluster_url_is_refused_at_start_without_its_password(text: str) -> None:
    with pytest.raises(ValueError, match="amqp") as refused:
        Settings(rabbitmq_url=text)
    assert "secret" not in str(refused.value)
