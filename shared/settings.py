"""Process configuration, read once from ``CALLMESH_*`` environment variables.

One model for every service so that the names in the contract are defined in a
single place; a service reads only the fields it needs.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.acl import AddressAcl, parse_acl, parse_network_profiles
from shared.keys import parse_key_list
from shared.sip.auth.offer import DigestOffer, parse_algorithms

if TYPE_CHECKING:
    from shared.protection.failures import AuthFailureSettings

Transport = Literal["udp", "tcp"]

DEFAULT_API_MAX_BODY = 1 << 20
"""1 MiB: the largest JSON body (a dialplan of 1024 rules) is well under it."""
DEFAULT_API_MAX_IMPORT_BODY = 128 << 20
"""128 MiB: a million-rule rate deck is about 30 MB."""


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """One edge socket from ``CALLMESH_SIP_LISTEN``."""

    transport: Transport
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        transport, _, rest = text.strip().partition(":")
        if transport not in ("udp", "tcp"):
            raise ValueError(f"unknown transport {transport!r} in {text!r} (udp or tcp)")
        host, port = split_host_port(rest)
        return cls(transport, host, port)  # type: ignore[arg-type]


def split_host_port(text: str) -> tuple[str, int]:
    """Split ``host:port`` or ``[v6]:port``; the brackets are removed."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [host]:port, got {text!r}")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"expected host:port, got {text!r}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad port in {text!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Everything a Callmesh process can be told from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="CALLMESH_", extra="ignore", hide_input_in_errors=True
    )
    """Errors name the variable and the problem, never the value (it may be a secret)."""

    rabbitmq_url: str | None = None
    redis_url: str | None = None
    namespace: str = Field(default="callmesh", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    http_listen: str = "127.0.0.1:8080"
    api_token: SecretStr | None = None
    """Kept as a secret so no repr or log of the settings shows it."""
    api_max_body: int = Field(default=DEFAULT_API_MAX_BODY, ge=0)
    """Bytes an HTTP request body may have (413 beyond), except the file imports'."""
    api_max_import_body: int = Field(default=DEFAULT_API_MAX_IMPORT_BODY, ge=0)
    """Bytes of a file import's body (``POST /v1/rules:import``, a whole rate deck)."""
    metrics_public: bool = False
    """Serve ``/metrics`` without the token (a scraper that cannot send one)."""
    sip_listen: str = "udp:127.0.0.1:5060,tcp:127.0.0.1:5060"
    trusted_networks: str = "127.0.0.0/8,::1/128"
    instance: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    )
    data_dir: str = "var"
    log_level: str = "INFO"
    sip_advertise: str | None = None
    """``host[:port]`` the edge puts in its Via and Record-Route instead of the
    listening address (NAT, containers); unset: the listening address."""
    edge_workers: int = Field(default=1, ge=1, le=64)
    """Edge worker processes sharing the SIP sockets (SO_REUSEPORT)."""
    fr_timeout: float = Field(default=5.0, gt=0)
    """Seconds a gateway may stay silent (no response at all) before the next is tried."""
    fr_inv_timeout: float = Field(default=60.0, gt=0)
    """Seconds after a provisional response before an INVITE branch is cancelled and
    the next gateway tried (Timer C of RFC 3261 §16.8)."""
    overload_lag_ms: float = Field(default=100.0, ge=0)
    """Event-loop lag from which an edge worker answers new INVITEs 503 with
    Retry-After while in-dialog traffic goes on (0: never shed load)."""
    overload_retry_after: int = Field(default=5, ge=1)
    """Seconds in the Retry-After of those 503s."""
    tcp_max_connections: int = Field(default=4096, ge=1)
    """Open SIP TCP connections per process, both directions."""
    tcp_max_connections_per_source: int = Field(default=128, ge=0)
    """SIP TCP connections one source IP may hold open to a process (0: no cap)."""
    tcp_message_timeout: float = Field(default=10.0, gt=0)
    """Seconds a TCP peer has to complete a message from its first byte (and to send a
    whole first message after connecting); a trickle does not extend it."""
    call_events: bool = True
    """Whether the edge publishes the `edge.call.…` events the accounting service builds
    call records from (off: none, for a deployment without accounting)."""
    udp_mtu: int = Field(default=1300, ge=0)
    """Bytes above which a request the edge forwards goes by TCP instead of UDP when the
    next hop's URI does not name UDP (RFC 3261 §18.1.1; Kamailio's `udp_mtu`); 0: never."""
    sip_t1: float = Field(default=0.5, gt=0)
    sip_t2: float = Field(default=4.0, gt=0)
    sip_t4: float = Field(default=5.0, gt=0)
    registrar_min_expires: int = Field(default=60, ge=1)
    """Shortest registration accepted; shorter ones get 423 with Min-Expires."""
    registrar_max_expires: int = Field(default=3600, ge=1)
    """Longest registration granted; longer requests are shortened to this."""
    registrar_default_expires: int = Field(default=3600, ge=1)
    """Registration length when neither the Contact nor the request says one."""
    registrar_max_contacts: int = Field(default=10, ge=1)
    """Bindings one address-of-record may hold; a REGISTER going over is refused (403)."""
    registrar_nonce_ttl: int = Field(default=300, ge=1)
    """Seconds a digest nonce is good for; older ones are answered with stale=true."""
    digest_algorithms: str = "MD5"
    """Digest algorithms offered in 401/407 challenges, most preferred first (one
    challenge each), in every domain without its own list below. MD5 alone by
    default: many phones give up on a response that also offers SHA-256
    (``shared.sip.auth.offer``)."""
    digest_domain_algorithms: str = ""
    """``domain=ALGORITHM[,ALGORITHM]``, ``;``-separated: the domains whose phones all
    know SHA-256 (RFC 8760) and get it offered, e.g. ``example.com=SHA-256,MD5``."""
    registrar_workers: int = Field(default=16, ge=1, le=256)
    """REGISTERs one registrar process handles at once (consumers on its work queue)."""
    nat_keepalive_interval: float = Field(default=30.0, gt=0, le=3600)
    """Seconds between two keepalives of a NAT'd or connection-oriented binding, sent by
    the edge holding its flow (each binding at its own phase within the interval)."""
    nat_keepalive_timeout: float = Field(default=120.0, gt=0)
    """Seconds a binding may leave its keepalives unanswered before it is removed
    (``registrar.binding.removed``, cause ``unreachable``)."""
    # ----- edge security and policies (services/edge/policy) -----
    topology_keys: SecretStr | None = None
    """``id:base64key[,id:base64key]`` shared by every edge, current first; unset: no
    topology hiding (targets asking for it are refused at the edge's start)."""
    record_route_keys: SecretStr | None = None
    """``id:base64key[,id:base64key]`` the edges sign their Record-Route with (current first,
    the previous one still accepted); unset: one key generated once and kept in the store."""
    caller_profiles: str = ""
    """Routing group and dialplan per caller network: ``networks=group[/dialplan]``, ``;``-separated
    (see ``services.edge.policy.callers``); others route in group ``0`` with no dialplan."""
    routing_hook: str | None = None
    """``package.module`` or ``package.module:function`` run on every routing decision."""
    routing_hook_budget_ms: float = Field(default=5.0, gt=0, le=1000)
    pike_limit: int = Field(default=30, ge=1)
    """Requests one untrusted source IP may send per ``pike_period`` before it is blocked."""
    pike_period: float = Field(default=2.0, gt=0)
    pike_block_time: float = Field(default=120.0, gt=0)
    pike_max_sources: int = Field(default=100_000, ge=16)
    pike_max_blocked: int = Field(default=10_000, ge=16)
    call_limit_per_subscriber: int = Field(default=0, ge=0)
    """Concurrent calls per subscriber on one edge process; 0: unlimited."""
    call_limit_per_source: int = Field(default=0, ge=0)
    """Concurrent calls per source IP on one edge process; 0: unlimited."""
    call_limit_max_call_duration: float = Field(default=4 * 3600.0, gt=0)
    scanner_action: Literal["drop", "answer"] = "drop"
    scanner_sweep_targets: int = Field(default=10, ge=2)
    scanner_sweep_window: float = Field(default=60.0, gt=0)
    scanner_flag_time: float = Field(default=3600.0, gt=0)
    scanner_user_agents: str | None = None
    """Comma-separated lower-case User-Agent substrings; unset: the built-in list."""
    auth_failure_window: int = Field(default=600, ge=1)
    """Seconds a failed authentication counts (``shared.protection.failures``)."""
    auth_delay_after: int = Field(default=5, ge=1)
    auth_delay: float = Field(default=2.0, ge=0, le=30)
    auth_block_after: int = Field(default=10, ge=1)
    auth_source_block_after: int = Field(default=50, ge=1)
    auth_block_time: int = Field(default=600, ge=1)
    rtpengine: str = ""
    """rtpengine ng addresses, ``udp:host:port[=weight]`` comma-separated (``shared.rtpengine``)."""
    rtpengine_timeout: float = Field(default=0.5, gt=0, le=30)
    rtpengine_retries: int = Field(default=2, ge=0, le=10)
    rtpengine_ping_interval: float = Field(default=5.0, gt=0)

    @field_validator("http_listen")
    @classmethod
    def _check_http_listen(cls, value: str) -> str:
        split_host_port(value)
        return value

    @field_validator("sip_listen")
    @classmethod
    def _check_sip_listen(cls, value: str) -> str:
        for item in value.split(","):
            ListenAddress.parse(item)
        return value

    @field_validator("caller_profiles")
    @classmethod
    def _check_caller_profiles(cls, value: str) -> str:
        parse_network_profiles(value)
        return value

    @field_validator("topology_keys", "record_route_keys")
    @classmethod
    def _check_keys(cls, value: SecretStr | None) -> SecretStr | None:
        """``id:base64key[,id:base64key]`` (`shared.keys`); the error never shows the key."""
        if value is not None:
            parse_key_list(value.get_secret_value())
        return value

    @field_validator("trusted_networks")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        """Entries ``[transport:]network[:port]``; plain CIDRs are the common case."""
        parse_acl(value)
        return value

    @field_validator("rtpengine")
    @classmethod
    def _check_rtpengine(cls, value: str) -> str:
        from shared.rtpengine.instances import parse_instances  # here: a cycle otherwise

        parse_instances(value)
        return value

    @field_validator("digest_algorithms")
    @classmethod
    def _check_digest_algorithms(cls, value: str) -> str:
        parse_algorithms(value)
        return value

    @field_validator("digest_domain_algorithms")
    @classmethod
    def _check_digest_domains(cls, value: str) -> str:
        DigestOffer.parse("MD5", value)
        return value

    @cached_property
    def digest_offer(self) -> DigestOffer:
        """The digest algorithms each realm's challenges offer."""
        return DigestOffer.parse(self.digest_algorithms, self.digest_domain_algorithms)

    @cached_property
    def auth_failures(self) -> AuthFailureSettings:
        from shared.protection.failures import AuthFailureSettings  # here: a cycle otherwise

        return AuthFailureSettings(
            window=self.auth_failure_window,
            delay_after=self.auth_delay_after,
            delay=self.auth_delay,
            block_after=self.auth_block_after,
            source_block_after=self.auth_source_block_after,
            block_time=self.auth_block_time,
        )

    @cached_property
    def http_address(self) -> tuple[str, int]:
        return split_host_port(self.http_listen)

    @cached_property
    def sip_addresses(self) -> tuple[ListenAddress, ...]:
        return tuple(ListenAddress.parse(item) for item in self.sip_listen.split(","))

    @cached_property
    def trusted(self) -> AddressAcl:
        """``CALLMESH_TRUSTED_NETWORKS`` as an ACL (network, and optionally transport and port)."""
        return AddressAcl.parse(self.trusted_networks)

    def check_api_exposure(self) -> None:
        """Refuse an open admin API: without a token, only loopback may be served."""
        host, _ = self.http_address
        if not self.api_token and not is_loopback(host):
            raise ConfigError(
                f"CALLMESH_HTTP_LISTEN={self.http_listen} is not a loopback address and "
                "CALLMESH_API_TOKEN is unset: set a token or listen on 127.0.0.1"
            )


class ConfigError(Exception):
    """A setting that cannot be served as given; the message says which and why."""
