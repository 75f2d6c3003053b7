"""Process configuration, read once from ``CALLMESH_*`` environment variables.

One model for every service so that the names in the contract are defined in a
single place; a service reads only the fields it needs.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.acl import AddressAcl, parse_network_profiles, parse_trusted_networks
from shared.bus.nodes import parse_node_urls
from shared.dns.servers import parse_servers
from shared.keys import parse_key_list
from shared.routing_table.media import parse_domain_policies
from shared.settings_formats import (
    ListenAddress,
    Transport,
    is_loopback,
    parse_client_certs,
    split_host_port,
)
from shared.sip.auth.offer import DigestOffer, parse_algorithms
from shared.store.urls import parse_redis_url

if TYPE_CHECKING:
    from shared.protection.failures import AuthFailureSettings

SECURE_LISTENERS = ("tls", "wss")
"""Listeners that present our certificate (``CALLMESH_TLS_CERT``)."""

DEFAULT_API_MAX_BODY = 1 << 20
"""1 MiB: the largest JSON body (a dialplan of 1024 rules) is well under it."""
DEFAULT_API_MAX_IMPORT_BODY = 128 << 20
"""128 MiB: a million-rule rate deck is about 30 MB."""


TEXT_FORMATS: dict[str, Callable[[str], object]] = {
    "http_listen": split_host_port,
    "tls_client_certs": parse_client_certs,
    "media_relay_domains": parse_domain_policies,
    "dns_servers": parse_servers,
    "caller_profiles": parse_network_profiles,
    "trusted_networks": parse_trusted_networks,  # ``[transport:]network[:port]``, none too wide
    "digest_algorithms": parse_algorithms,
    "redis_url": parse_redis_url,  # ``redis://…`` or ``redis+sentinel://h1,h2/service/db``
    "rabbitmq_url": parse_node_urls,  # one AMQP URL, or one per cluster node, comma-separated
}
"""Variables kept as text whose format is checked at start, each by the parser that reads it."""


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
    edge_kernel_steering: bool = True
    """With several workers: an eBPF program gives each UDP datagram to its call's worker
    (needs CAP_BPF and CAP_PERFMON; without them, or off, the worker it reaches hands it
    on). On by default: 3-13 % less CPU per call at 1000-3000 cps, and fewer calls failed
    by a saturated edge (docs/benchmarks.md, "Kernel steering on by default")."""
    fr_timeout: float = Field(default=5.0, gt=0)
    """Seconds a gateway may stay silent (no response at all) before the next is tried."""
    fr_inv_timeout: float = Field(default=60.0, gt=0)
    """Seconds after a provisional response before the branch is cancelled (RFC 3261 Timer C)."""
    overload_lag_ms: float = Field(default=100.0, ge=0)
    """Event-loop lag from which an edge worker answers new INVITEs 503 with
    Retry-After while in-dialog traffic goes on (0: never shed load)."""
    overload_queue_ms: float = Field(default=200.0, ge=0)
    """Wait of every datagram in one of an edge worker's sockets' buffers over a probe (a
    queue standing) from which it answers new INVITEs 503 likewise (0: never shed for it)."""
    overload_event_backlog_percent: float = Field(default=50.0, ge=0, le=100)
    """Share of an edge worker's bound (20,000) on call events waiting for the bus from which
    it answers new INVITEs 503 until under half that: no call whose record is lost (0: never)."""
    overload_retry_after: int = Field(default=5, ge=1)
    """Seconds in the Retry-After of those 503s."""
    tcp_max_connections: int = Field(default=4096, ge=1)
    """Open SIP TCP connections per process, both directions."""
    tcp_max_connections_per_source: int = Field(default=128, ge=0)
    """SIP TCP connections one source IP may hold open to a process (0: no cap)."""
    tcp_message_timeout: float = Field(default=10.0, gt=0)
    """Seconds a TCP peer has to complete a message from its first byte (and to send a
    whole first message after connecting); a trickle does not extend it."""
    tls_cert: str | None = None
    """PEM certificate (chain) of the ``tls:`` listeners; reloaded on change or SIGHUP."""
    tls_key: str | None = None
    """PEM private key of ``tls_cert``."""
    tls_ca: str | None = None
    """PEM bundle of the CAs TLS peers' certificates are verified against; unset: the system's."""
    tls_client_certs: str = ""
    """Client certificates gateways name (their ``tls.client_certificate``):
    ``name=/cert.pem:/key.pem``, ``;``-separated."""
    tls_handshake_timeout: float = Field(default=5.0, gt=0, le=60)
    """Seconds a TLS handshake may take, either direction, before the connection is cut."""
    tls_max_connections: int = Field(default=4096, ge=1)
    """Open SIP TLS connections per process, both directions (beside the TCP ones)."""
    tls_idle_timeout: float = Field(default=300.0, gt=0)
    """Seconds without traffic after which a TLS connection is closed."""
    tls_verify_clients: Literal["off", "optional", "required"] = "off"
    """Whether ``tls:`` listeners ask peers for a certificate, verified against ``tls_ca``
    (``optional``, ``required``): RFC 5923 aliasing needs one; off by default."""
    ws_origins: str = ""
    """Comma-separated ``Origin`` values (``https://app.example.com``) a browser's WebSocket
    upgrade must carry on ``ws:``/``wss:`` listeners (403 otherwise); unset: any origin."""
    ws_ping_interval: float = Field(default=30.0, gt=0)
    """Seconds of silence after which the edge pings a WebSocket peer; its pong is traffic,
    so a live browser is never closed as idle and a dead one is after the idle time."""
    call_events: bool = True
    """Whether the edge publishes the `edge.call.…` events the accounting service builds
    call records from (off: none, for a deployment without accounting)."""
    edge_event_batch: int = Field(default=256, ge=1, le=1000)
    """Call events an edge worker may send as one ``edge.call.batch`` message when they wait
    together (under load; up to 1,000 while more than a batch per sender waits); 1: every
    event alone, on its own ``edge.call.…`` routing key."""
    edge_event_linger_ms: float = Field(default=40.0, ge=0, le=1000)
    """Milliseconds an edge worker's sender waits for call events to make a batch when fewer
    than ``edge_event_batch`` wait (the messages per event fall, and the CPU they cost);
    0: an event goes as soon as a sender is free."""
    edge_outbox_dir: str | None = None
    """Where each edge worker journals its call events until the broker confirmed them, so a
    worker killed (even by SIGKILL) loses none: its successor publishes them
    (`services.edge.runtime.journal`); unset: ``<data_dir>/edge-outbox``; empty: no journal,
    the events wait in memory only."""
    edge_outbox_max_mb: int = Field(default=64, ge=1)
    """Megabytes a worker's journal may take; past it, events go unjournaled (counted, logged)."""
    edge_outbox_fsync_interval: float = Field(default=0.0, ge=0)
    """Seconds between fsyncs of the journal (a power loss then costs at most that much);
    0: never, the page cache keeps what a killed process wrote, not what a power loss took."""
    udp_mtu: int = Field(default=1300, ge=0)
    """Bytes above which a request the edge forwards goes by TCP instead of UDP when the
    next hop's URI does not name UDP (RFC 3261 §18.1.1; Kamailio's `udp_mtu`); 0: never."""
    udp_coalesce_ms: int = Field(default=0, ge=0, le=100)
    """Milliseconds a SIP UDP socket is not read after a burst that emptied it (0: read at
    once): fewer wake-ups, less CPU per call, each message up to that much later (edge.md)."""
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
    pike_share_interval: float = Field(default=0.1, ge=0, le=5.0)
    """Seconds between a worker's batches of flood counts to the cluster (Redis); sooner for a
    source near the limit. 0: each worker counts alone (a flooder gets the limit per worker)."""
    dispatcher_share_interval: float = Field(default=0.5, ge=0, le=30.0)
    """Seconds between a worker's exchanges of its ``least_calls`` counts with the cluster
    (Redis); 0: each worker balances only the calls it sent."""
    call_limit_per_subscriber: int = Field(default=0, ge=0)
    """Concurrent calls per subscriber over the whole cluster (Redis); 0: unlimited."""
    call_limit_per_subscriber_cps: int = Field(default=0, ge=0)
    """New calls per second per subscriber over the whole cluster (Redis); 0: none."""
    call_limit_per_source: int = Field(default=0, ge=0)
    """Concurrent calls per source IP of a stranger (no peer covers it) over the whole
    cluster (Redis); 0: unlimited."""
    call_limit_per_source_cps: int = Field(default=0, ge=0)
    """New calls per second per source IP of a stranger, over the whole cluster; 0: none."""
    call_limit_max_call_duration: float = Field(default=4 * 3600.0, gt=0)
    call_limit_status: Literal[403, 486] = 486
    """The answer past a concurrent-call limit (CPS limits answer 503 with Retry-After)."""
    call_limit_lease: float = Field(default=90.0, ge=3.0, le=3600.0)
    """Seconds a call's lease lives unless its edge renews it (every third of this):
    how long a crashed edge's calls keep counting."""
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
    media_relay: Literal["always", "nat", "never"] = "nat"
    """The media relay policy of a call whose gateway and rule set none (``docs/media.md``);
    no relay at all without ``CALLMESH_RTPENGINE``."""
    media_relay_domains: str = ""
    """Per subscriber domain, where the gateway and rule set none: ``domain=policy``
    comma-separated (``retail.example=always,pbx.example=never``; ``docs/media.md``)."""
    media_relay_required: bool = False
    """When rtpengine cannot take a call the policy relays: true refuses it (503 with
    Retry-After), false carries it on unrelayed; logged and counted either way."""
    rtpengine_flags: str = ""
    """rtpengine options added to every offer and answer, Kamailio's notation, space-separated:
    ``ICE=remove replace-origin codec-strip-G722 asymmetric`` (``shared.rtpengine.flags``)."""
    dns_servers: str = ""
    """DNS servers for next hops given by name, ``address[:port]`` comma-separated; empty:
    the system's (``/etc/resolv.conf``)."""
    dns_timeout: float = Field(default=2.0, gt=0, le=30)
    """Seconds one DNS query may take; a call waits at most a few of them, once per name."""
    dns_negative_ttl: float = Field(default=30.0, ge=0, le=3600)
    """Seconds an answer without records is kept when the server names no SOA minimum."""
    dns_target_hold: float = Field(default=30.0, gt=0, le=3600)
    """Seconds a DNS target (an SRV record's host) that failed a request is tried last."""
    b2bua_session_expires: int = Field(default=1800, ge=90, le=86_400)
    """Seconds of the session interval the B2BUA offers on leg B and grants on leg A
    (RFC 4028; ``docs/b2bua.md``)."""
    b2bua_min_se: int = Field(default=90, ge=90, le=86_400)
    """The smallest session interval the B2BUA accepts (422 below it); the RFC's is 90."""
    b2bua_session_timer_scale: float = Field(default=1.0, ge=0.001, le=1.0)
    """The B2BUA's session intervals shrunk on its clock by this factor (the headers keep
    their values): tests only, as ``fraud_window_scale``."""
    fraud_window_scale: float = Field(default=1.0, ge=0.001, le=1.0)
    """The fraud rules' minute (and day, 1440 of them) scaled down by this factor: 0.1 makes
    a minute 6 s (tests; ``docs/fraud.md``)."""

    @field_validator(*TEXT_FORMATS)
    @classmethod
    def _check_text_format(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Kept as text and read where used, but refused at start when unreadable."""
        if value is not None and info.field_name is not None:
            TEXT_FORMATS[info.field_name](value)
        return value

    @field_validator("sip_listen")
    @classmethod
    def _check_sip_listen(cls, value: str) -> str:
        for item in value.split(","):
            ListenAddress.parse(item)
        return value

    @model_validator(mode="after")
    def _check_tls_listener(self) -> Settings:
        """A ``tls:`` or ``wss:`` listener needs a certificate; said at start, not at the
        first phone."""
        secure = [a.transport for a in self.sip_addresses if a.transport in SECURE_LISTENERS]
        if secure and not (self.tls_cert and self.tls_key):
            raise ValueError(
                f"CALLMESH_SIP_LISTEN has a {secure[0]}: listener: set CALLMESH_TLS_CERT and "
                "CALLMESH_TLS_KEY (PEM files)"
            )
        return self

    @field_validator("topology_keys", "record_route_keys")
    @classmethod
    def _check_keys(cls, value: SecretStr | None) -> SecretStr | None:
        """``id:base64key[,id:base64key]`` (`shared.keys`); the error never shows the key."""
        if value is not None:
            parse_key_list(value.get_secret_value())
        return value

    @field_validator("rtpengine")
    @classmethod
    def _check_rtpengine(cls, value: str) -> str:
        from shared.rtpengine.instances import parse_instances  # here: a cycle otherwise

        parse_instances(value)
        return value

    @field_validator("rtpengine_flags")
    @classmethod
    def _check_rtpengine_flags(cls, value: str) -> str:
        from shared.rtpengine.flags import parse_flags  # here: a cycle otherwise

        parse_flags(value)
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


__all__ = [
    "ConfigError",
    "ListenAddress",
    "Settings",
    "Transport",
    "is_loopback",
    "parse_client_certs",
    "split_host_port",
]


class ConfigError(Exception):
    """A setting that cannot be served as given; the message says which and why."""
