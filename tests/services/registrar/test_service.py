"""The registrar on the real RabbitMQ and Redis: subscribers API, REGISTER via the queue, events."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import pytest

from bench.registrar import Phone
from shared.contracts.registrar import REGISTER_QUEUE, FailedAuth, RegisterReply
from shared.registrar.layout import subscriber_key
from shared.registrar.location import (
    is_local_domain,
    lookup_bindings,
    shared_secret,
    subscriber_ha1,
)
from shared.sip.auth.digest import Challenge, compute_ha1, parse_challenge
from shared.sip.auth.nonces import NonceKeeper
from shared.sip.message import Response
from shared.store import Store
from tests.services.registrar.support import DOMAIN, Registrar, registrar

pytestmark = pytest.mark.integration

SHA256_IN_DOMAIN = f"{DOMAIN}=SHA-256,MD5"
"""The phones of these tests know RFC 8760 (bench's Phone answers SHA-256)."""


@pytest.fixture
async def reg(namespace: str, redis_store: Store) -> AsyncIterator[Registrar]:
    async with registrar(
        namespace,
        redis_store,
        registrar_min_expires=2,
        registrar_max_contacts=3,
        digest_domain_algorithms=SHA256_IN_DOMAIN,
    ) as found:
        yield found


# ----- subscribers -------------------------------------------------------------------------


async def test_subscriber_crud_and_local_domains(reg: Registrar) -> None:
    client = reg.client
    reply = await client.put(
        "/v1/subscribers/alice",
        json={"domain": "Example.COM", "password": "s3cret", "plan": "gold"},
    )
    assert reply.status_code == 200
    assert reply.json() == {
        "id": "alice@example.com",
        "username": "alice",
        "domain": "example.com",
        "enabled": True,
        "plan": "gold",
        "created": True,
    }
    added = await reg.event("registrar.domain.added")
    assert added.data == {"domain": "example.com"}
    assert await is_local_domain(reg.store, "EXAMPLE.com")

    got = await client.get("/v1/subscribers/alice")
    assert got.status_code == 200
    assert got.json()["plan"] == "gold"
    assert (await client.get("/v1/subscribers/alice@example.com")).json() == got.json()

    await client.put("/v1/subscribers/alice@other.org", json={"password": "x"})
    ambiguous = await client.get("/v1/subscribers/alice")
    assert ambiguous.status_code == 409
    assert (await client.get("/v1/subscribers/alice@other.org")).json()["domain"] == "other.org"

    listing = await client.get("/v1/subscribers", params={"limit": 1})
    first = listing.json()
    assert [s["id"] for s in first["items"]] == ["alice@example.com"]
    second = (await client.get("/v1/subscribers", params={"cursor": first["next_cursor"]})).json()
    assert [s["id"] for s in second["items"]] == ["alice@other.org"]
    assert second["next_cursor"] is None

    # An update without password keeps the HA1s.
    update = await client.put("/v1/subscribers/alice@example.com", json={"enabled": False})
    assert update.json()["created"] is False
    assert await subscriber_ha1(reg.store, "alice", DOMAIN, "MD5") is None  # disabled
    await client.put("/v1/subscribers/alice@example.com", json={"enabled": True})
    assert await subscriber_ha1(reg.store, "alice", DOMAIN, "MD5") == compute_ha1(
        "alice", DOMAIN, "s3cret"
    )
    assert await subscriber_ha1(reg.store, "alice", DOMAIN, "SHA-256") == compute_ha1(
        "alice", DOMAIN, "s3cret", "SHA-256"
    )

    assert (await client.delete("/v1/subscribers/alice@other.org")).status_code == 200
    removed = await reg.event("registrar.domain.removed")
    assert removed.data == {"domain": "other.org"}
    assert not await is_local_domain(reg.store, "other.org")
    assert (await client.delete("/v1/subscribers/alice@other.org")).status_code == 404
    assert (await client.get("/v1/subscribers/alice")).status_code == 200  # unambiguous again
    assert (await client.get("/v1/subscribers/nobody")).status_code == 404


@pytest.mark.parametrize(
    "path, body",
    [
        ("alice", {"password": "x"}),  # no domain anywhere
        ("alice@example.com", {"domain": "other.org", "password": "x"}),
        ("alice", {"domain": "bad domain", "password": "x"}),
        ("alice", {"domain": DOMAIN, "password": ""}),
        ("alice", {"domain": DOMAIN, "password": "x", "enabled": "perhaps"}),
        ("alice", {"domain": DOMAIN}),  # new subscriber without a password
        ("al ice", {"domain": DOMAIN, "password": "x"}),
    ],
)
async def test_bad_subscriber_bodies_are_422(reg: Registrar, path: str, body: object) -> None:
    reply = await reg.client.put(f"/v1/subscribers/{path}", json=body)
    assert reply.status_code == 422, reply.text
    assert await reg.store.redis.exists(subscriber_key(reg.store, "alice@example.com")) == 0


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("%252e%252e@example.com", 422),  # the id %2e%2e: dots in disguise
        ("%2e%2e@example.com", 422),  # decoded by the server: ..
        ("a" * 5000 + "@example.com", 422),
        ("a" * 65, 422),
        ("a%252Fb@example.com", 422),  # the id a%2Fb
        ("a%250Ab@example.com", 422),  # the id a%0Ab
        ("a%0Ab@example.com", 422),  # a newline in the id
        ("a%2Fb@example.com", 404),  # a/b: no such route
        ("alice@exa..mple.com", 422),
        ("alice@" + "a" * 300, 422),
    ],
)
async def test_hostile_subscriber_ids_are_refused(reg: Registrar, path: str, status: int) -> None:
    for method in ("PUT", "GET", "DELETE"):
        body = {"password": "x"} if method == "PUT" else None
        reply = await reg.client.request(method, f"/v1/subscribers/{path}", json=body)
        assert reply.status_code == status, (method, reply.text)
        assert len(reply.content) < 1000
    pattern = f"{reg.store.namespace}:registrar:subscriber*"
    assert [key async for key in reg.store.redis.scan_iter(match=pattern)] == []


async def test_an_escaped_user_part_is_a_subscriber(reg: Registrar) -> None:
    """The positive control: %40 (an @ inside the user part) is a valid SIP user."""
    path = "bob%2540corp.com@example.com"  # the id bob%40corp.com@example.com
    assert (await reg.client.put(f"/v1/subscribers/{path}", json={"password": "x"})).is_success
    got = await reg.client.get(f"/v1/subscribers/{path}")
    assert got.json()["id"] == "bob%40corp.com@example.com"
    pattern = f"{reg.store.namespace}:registrar:subscriber*"  # what the test above finds empty
    assert [key async for key in reg.store.redis.scan_iter(match=pattern)] != []


@pytest.mark.parametrize(
    "aor", ["sip:%252e%252e@example.com", "sip:" + "a" * 5000 + "@example.com", "a%250A@x.org"]
)
async def test_hostile_aors_are_refused(reg: Registrar, aor: str) -> None:
    assert (await reg.client.get(f"/v1/registrations/{aor}")).status_code == 422
    assert (await reg.client.delete(f"/v1/registrations/{aor}")).status_code == 422


async def test_no_password_anywhere_in_redis(reg: Registrar) -> None:
    password = "Pa55-unique-93a1"
    phone = await reg.subscriber("carol", password)
    assert (await reg.registered(phone)).status == 200
    keys = [key async for key in reg.store.redis.scan_iter(match=f"{reg.store.namespace}:*")]
    assert keys
    for key in keys:
        dump = await reg.store.redis.dump(key)
        assert dump is not None
        assert password.encode() not in dump, key


# ----- REGISTER ----------------------------------------------------------------------------


async def test_challenge_then_register(reg: Registrar) -> None:
    phone = await reg.subscriber("alice")
    first = await reg.send(phone, phone.register())
    assert first.status == 401
    challenges = [parse_challenge(v) for v in first.headers("www-authenticate")]
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
    assert {c.realm for c in challenges} == {DOMAIN}
    assert first.to_tag

    phone.learn(first)
    ok = await reg.send(phone, phone.register(expires=300))
    assert ok.status == 200
    (contact,) = ok.headers("contact")
    assert contact.startswith(f"<{phone.contact}>;expires=")
    assert 299 <= int(contact.split("expires=")[1]) <= 300

    added = await reg.event("registrar.binding.added")
    binding = added.data["binding"]
    assert binding["aor"] == phone.aor
    assert binding["contact"] == phone.contact
    assert binding["received"] == "sip:203.0.113.9:40060"
    assert binding["edge"] == "edge-a"
    assert binding["edge_address"] == "sip:198.51.100.1:5060"
    assert binding["expires_at"] == pytest.approx(time.time() + 300, abs=5)

    (shown,) = await reg.bindings("sip%3Aalice%40example.com")
    assert shown["contact"] == phone.contact
    assert shown["transport"] == "udp"
    assert 298 <= shown["expires"] <= 300  # type: ignore[operator]
    assert (await reg.bindings("alice@example.com"))[0]["contact"] == phone.contact

    # A refresh re-uses the nonce with the next nonce-count, no new challenge.
    again = await reg.send(phone, phone.register(expires=600))
    assert again.status == 200
    assert (await reg.event("registrar.binding.refreshed")).data["binding"][
        "contact"
    ] == phone.contact


async def test_md5_works_too(reg: Registrar) -> None:
    phone = await reg.subscriber("mo")
    phone.algorithm = "MD5"
    assert (await reg.registered(phone)).status == 200


async def test_a_domain_without_its_own_list_is_offered_md5_alone(reg: Registrar) -> None:
    """The default (CALLMESH_DIGEST_ALGORITHMS=MD5): what an MD5-only phone can answer."""
    from bench.registrar import Phone

    body = {"domain": "old.example.net", "password": "secret"}
    (await reg.client.put("/v1/subscribers/grandpa", json=body)).raise_for_status()
    phone = Phone("grandpa", "old.example.net", "secret", algorithm="MD5")
    first = await reg.send(phone, phone.register())
    assert first.status == 401
    assert [parse_challenge(v).algorithm for v in first.headers("www-authenticate")] == ["MD5"]
    phone.learn(first)
    assert (await reg.send(phone, phone.register())).status == 200


async def test_wrong_password_is_forbidden(reg: Registrar) -> None:
    phone = await reg.subscriber("alice")
    first = await reg.send(phone, phone.register())
    phone.learn(first)
    refused = await reg.send(phone, phone.register(password="guess"))
    assert refused.status == 403
    assert await lookup_bindings(reg.store, phone.aor) == []


async def raw_reply(reg: Registrar, phone: Phone, sip: bytes) -> RegisterReply:
    body = await reg.edge.request(REGISTER_QUEUE, phone.via_edge(sip).to_bytes(), timeout=10.0)
    return RegisterReply.model_validate_json(body)


async def test_a_wrong_password_is_reported_to_the_edge_for_counting(reg: Registrar) -> None:
    phone = await reg.subscriber("alice")
    phone.learn(await reg.send(phone, phone.register()))
    refused = await raw_reply(reg, phone, phone.register(password="guess"))
    assert refused.failed_auth == FailedAuth(user="alice", realm=DOMAIN)
    stranger = Phone("mallory", DOMAIN, "x")
    stranger.learn(await reg.send(stranger, stranger.register()))
    unknown = await raw_reply(reg, stranger, stranger.register())
    assert unknown.failed_auth == FailedAuth(user="mallory", realm=DOMAIN)  # the same report
    # The right password is no failed authentication, a 403 for other reasons neither.
    accepted = await raw_reply(reg, phone, phone.register())
    assert accepted.sip is not None and accepted.sip.startswith(b"SIP/2.0 200")
    assert accepted.failed_auth is None
    too_many = await raw_reply(
        reg, phone, phone.register(contacts=[f"<sip:a@10.0.0.{n}>" for n in range(12)])
    )
    assert too_many.sip is not None and too_many.sip.startswith(b"SIP/2.0 403")
    assert too_many.failed_auth is None


async def test_a_known_and_an_unknown_user_get_the_same_answers(reg: Registrar) -> None:
    """svwar enumerates with REGISTER too: 401, then 403 for a wrong password, alike."""
    await reg.subscriber("alice")
    from bench.registrar import Phone

    answers = []
    for user in ("alice", "mallory"):  # alice is a subscriber, mallory is not
        guesser = Phone(user, DOMAIN, "guessed", call_id="guess")
        first = await reg.send(guesser, guesser.register())
        guesser.learn(first)
        second = await reg.send(guesser, guesser.register())
        answers.append([_unmarked(response, user) for response in (first, second)])
    known, unknown = answers
    assert [response.split(b"\r\n", 1)[0] for response in known] == [
        b"SIP/2.0 401 Unauthorized",
        b"SIP/2.0 403 Forbidden",
    ]
    assert known == unknown


def _unmarked(response: Response, user: str) -> bytes:
    """The response without what differs in every exchange (nonce, tags, branch) or names."""
    text = re.sub(rb'nonce="[^"]+"|tag=\w+|branch=\w+', b"", response.to_bytes())
    return text.replace(user.encode(), b"someone")


async def test_replayed_nonce_count_is_refused(reg: Registrar) -> None:
    phone = await reg.subscriber("alice")
    assert (await reg.registered(phone)).status == 200
    phone.nc -= 1  # the same nonce with the same nc again, in an otherwise new request
    replay = await reg.send(phone, phone.register())
    assert replay.status == 401
    assert not parse_challenge(replay.headers("www-authenticate")[0]).stale


async def test_stale_nonce_gets_stale_true(reg: Registrar) -> None:
    phone = await reg.subscriber("alice")
    keeper = NonceKeeper(await shared_secret(reg.store), ttl=300)
    old = keeper.mint(DOMAIN, time.time() - 400)
    phone.challenge = Challenge(DOMAIN, old, "SHA-256")
    stale = await reg.send(phone, phone.register())
    assert stale.status == 401
    assert all(parse_challenge(v).stale for v in stale.headers("www-authenticate"))
    phone.learn(stale)
    assert (await reg.send(phone, phone.register())).status == 200


async def test_forged_nonce_is_challenged_afresh(reg: Registrar) -> None:
    phone = await reg.subscriber("alice")
    phone.challenge = Challenge(DOMAIN, "1.2.3", "SHA-256")
    answer = await reg.send(phone, phone.register())
    assert answer.status == 401
    assert not parse_challenge(answer.headers("www-authenticate")[0]).stale


async def test_too_brief_is_423(reg: Registrar) -> None:
    phone = await reg.subscriber("alice")
    brief = await reg.registered(phone, expires=1)
    assert brief.status == 423
    assert brief.header("min-expires") == "2"


async def test_wildcard_unregisters_everything(reg: Registrar) -> None:
    phone = await reg.subscriber("alice")
    contacts = ["<sip:alice@10.0.0.1>", "<sip:alice@10.0.0.2>;expires=100"]
    assert (await reg.registered(phone, contacts=contacts)).status == 200
    assert len(await reg.bindings(phone.aor)) == 2
    refused = await reg.send(phone, phone.register(contacts=["*"], expires=None))
    assert refused.status == 400
    done = await reg.send(phone, phone.register(contacts=["*"], expires=0))
    assert done.status == 200
    assert done.headers("contact") == []
    assert await reg.bindings(phone.aor) == []
    removed = {
        (await reg.event("registrar.binding.removed")).data["binding"]["contact"] for _ in range(2)
    }
    assert removed == {"sip:alice@10.0.0.1", "sip:alice@10.0.0.2"}


async def test_single_contact_removed_with_expires_zero(reg: Registrar) -> None:
    phone = await reg.subscriber("alice")
    both = ["<sip:alice@10.0.0.1>", "<sip:alice@10.0.0.2>"]
    assert (await reg.registered(phone, contacts=both)).status == 200
    ok = await reg.send(phone, phone.register(contacts=["<sip:alice@10.0.0.1>;expires=0"]))
    assert ok.status == 200
    assert [c.split(">")[0] for c in ok.headers("contact")] == ["<sip:alice@10.0.0.2"]
    event = await reg.event("registrar.binding.removed")
    assert event.data["cause"] == "unregistered"


async def test_call_id_cseq_ordering(reg: Registrar) -> None:
    phone = await reg.subscriber("alice")
    assert (await reg.registered(phone, cseq=10)).status == 200
    older = await reg.send(phone, phone.register(cseq=10))
    assert older.status == 400
    assert (await reg.send(phone, phone.register(cseq=9))).status == 400
    assert (await reg.send(phone, phone.register(cseq=11))).status == 200
    phone.call_id = "another-call-id"
    assert (await reg.send(phone, phone.register(cseq=1))).status == 200


async def test_max_contacts(reg: Registrar) -> None:
    phone = await reg.subscriber("alice")
    three = [f"<sip:alice@10.0.0.{n}>" for n in range(3)]
    assert (await reg.registered(phone, contacts=three)).status == 200
    fourth = await reg.send(phone, phone.register(contacts=["<sip:alice@10.0.0.9>"]))
    assert fourth.status == 403
    assert len(await reg.bindings(phone.aor)) == 3
    # Refreshing the existing ones stays allowed.
    assert (await reg.send(phone, phone.register(contacts=three[:1]))).status == 200


async def test_q_values_order_bindings(reg: Registrar) -> None:
    phone = await reg.subscriber("alice")
    contacts = ["<sip:alice@10.0.0.1>;q=0.2", "<sip:alice@10.0.0.2>;q=0.9", "<sip:alice@10.0.0.3>"]
    ok = await reg.registered(phone, contacts=contacts)
    assert ok.status == 200
    found = await lookup_bindings(reg.store, phone.aor)
    assert [(b.contact, b.q) for b in found] == [
        ("sip:alice@10.0.0.3", None),
        ("sip:alice@10.0.0.2", 0.9),
        ("sip:alice@10.0.0.1", 0.2),
    ]
    assert any(c.endswith(";q=0.2") for c in ok.headers("contact"))


async def test_path_received_and_tcp_connection_are_kept(reg: Registrar) -> None:
    phone = await reg.subscriber("alice")
    path = ("Path: <sip:p1.example.net;lr>", "Supported: path")
    first = await reg.send(phone, phone.register(headers=path), transport="tcp")
    phone.learn(first)
    ok = await reg.send(phone, phone.register(headers=path), transport="tcp")
    assert ok.status == 200
    assert ok.headers("path") == ["<sip:p1.example.net;lr>"]
    (binding,) = await lookup_bindings(reg.store, phone.aor)
    assert binding.path == ("<sip:p1.example.net;lr>",)
    assert binding.received == "sip:203.0.113.9:40060;transport=tcp"
    assert binding.transport == "tcp"
    assert binding.connection_id == 7


async def test_expiry_removes_and_announces(reg: Registrar) -> None:
    phone = await reg.subscriber("alice")
    assert (await reg.registered(phone, expires=2)).status == 200
    added = await reg.event("registrar.binding.added")
    expired = await reg.event("registrar.binding.expired", within=10)
    assert expired.data["binding"]["contact"] == phone.contact
    expires_at = added.data["binding"]["expires_at"]
    assert expired.ts >= expires_at
    assert expired.ts - expires_at < 2.5  # detected within about a second
    assert await reg.bindings(phone.aor) == []
    assert await lookup_bindings(reg.store, phone.aor) == []


async def test_api_removal(reg: Registrar) -> None:
    phone = await reg.subscriber("alice")
    both = ["<sip:alice@10.0.0.1>", "<sip:alice@10.0.0.2>"]
    assert (await reg.registered(phone, contacts=both)).status == 200
    one = await reg.client.delete(
        f"/v1/registrations/{phone.aor}", params={"contact": "sip:alice@10.0.0.1"}
    )
    assert one.json()["removed"] == ["sip:alice@10.0.0.1"]
    event = await reg.event("registrar.binding.removed")
    assert event.data["cause"] == "api"
    assert [b["contact"] for b in await reg.bindings(phone.aor)] == ["sip:alice@10.0.0.2"]

    listing = (await reg.client.get("/v1/registrations")).json()
    assert [item["aor"] for item in listing["items"]] == [phone.aor]
    assert (await reg.client.delete(f"/v1/registrations/{phone.aor}")).status_code == 200
    assert await reg.bindings(phone.aor) == []
    assert (await reg.client.delete(f"/v1/registrations/{phone.aor}")).status_code == 404
    assert (await reg.client.get("/v1/registrations/not%20an%20aor")).status_code == 422


async def test_malformed_register_gets_400_not_a_crash(reg: Registrar) -> None:
    phone = await reg.subscriber("alice")
    bad = phone.register().replace(b"CSeq: 1 REGISTER", b"CSeq: x REGISTER")
    answer = await reg.send(phone, bad)
    assert answer.status == 400
    # The consumer keeps going.
    assert (await reg.registered(phone)).status == 200


async def test_two_registrars_share_the_queue(reg: Registrar, namespace: str) -> None:
    async with registrar(namespace, reg.store, digest_domain_algorithms=SHA256_IN_DOMAIN) as other:
        phones = [await reg.subscriber(f"user{n}") for n in range(20)]
        results = await asyncio.gather(*(other.registered(p) for p in phones))
        assert [r.status for r in results] == [200] * 20
