"""A DC broker's boot definitions: what they federate, and the inputs they refuse.

That RabbitMQ accepts them and federates the events with them is shown by the
lab's test (tests/deploy/two_dc/test_lab.py: a route change crosses both ways).
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest

from deploy.two_dc.federation import definitions, main, password_hash

PEER = "amqp://callmesh:pw@dc1-broker.example.net:5672"


def test_the_events_exchange_alone_is_federated_from_the_peer_once() -> None:
    found = definitions("prod", "dc1", PEER, "callmesh", "secret")
    [upstream] = found["parameters"]
    assert upstream["component"] == "federation-upstream"
    assert upstream["name"] == "dc1"
    assert upstream["value"]["uri"] == PEER
    assert upstream["value"]["max-hops"] == 1  # never echoed back to the DC it came from
    assert upstream["value"]["exchange"] == "prod.events.shared"  # only what is copied there
    assert upstream["value"]["expires"] == 60_000  # a DC away long is not queued for forever
    [policy] = found["policies"]
    assert policy["apply-to"] == "exchanges"
    assert policy["definition"] == {"federation-upstream": "dc1"}
    pattern = re.compile(policy["pattern"])
    assert pattern.match("prod.events")
    for other in ("prod.routing.commands", "prod.events.dead", "prodXevents", "x.prod.events"):
        assert not pattern.match(other), other


def test_the_caches_events_cross_and_the_calls_and_their_records_stay() -> None:
    found = definitions("prod", "dc1", PEER, "callmesh", "secret")
    assert {e["name"] for e in found["exchanges"]} == {"prod.events", "prod.events.shared"}
    copied = {b["routing_key"] for b in found["bindings"]}
    assert all(b["source"] == "prod.events" for b in found["bindings"])
    assert all(b["destination"] == "prod.events.shared" for b in found["bindings"])
    assert {"routing.#", "registrar.#", "health.#", "edge.gateway.failed"} <= copied
    assert {"edge.protection.#", "edge.auth.blocked"} <= copied
    crossing = [re.compile(key.replace(".", r"\.").replace("#", ".*") + "$") for key in copied]
    for local in ("edge.call.started", "edge.call.batch", "accounting.cdr.completed",
                  "accounting.cdr.timed_out", "edge.limit.reached"):  # fmt: skip # the list
        assert not any(pattern.match(local) for pattern in crossing), local


def test_the_services_user_is_stored_as_a_salted_hash_never_in_clear() -> None:
    found = definitions("prod", "dc1", PEER, "callmesh", "secret")
    [user] = found["users"]
    assert "secret" not in str(found["users"])
    raw = base64.b64decode(user["password_hash"])
    salt, digest = raw[:4], raw[4:]
    assert digest == hashlib.sha256(salt + b"secret").digest()
    assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert password_hash("secret") != password_hash("secret")  # a fresh salt each time
    assert found["vhosts"] == [{"name": "/"}]  # a broker loading definitions seeds none


@pytest.mark.parametrize(
    ("namespace", "peer_name", "peer_uri", "why"),
    [
        ("prod", "dc1", "amqp://u:p@dc1:5672/", "ends in '/'"),
        ("prod", "dc1", "http://dc1:5672", "amqp://"),
        ("prod", "dc1", "amqp://", "with a host"),
        ("prod", "dc1\n", PEER, "peer name"),
        ("prod", 'dc1", "x": "', PEER, "peer name"),
        ("prod", "", PEER, "peer name"),
        (".*", "dc1", PEER, "namespace"),
        ("prod|other", "dc1", PEER, "namespace"),
    ],
)
def test_inputs_rabbitmq_would_take_and_then_fail_on_are_refused_clearly(
    namespace: str, peer_name: str, peer_uri: str, why: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        definitions(namespace, peer_name, peer_uri, "callmesh", "secret")


def test_the_command_writes_the_file_from_a_password_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    for content, error in (("", "is empty"), (None, "No such file")):
        if content is not None:
            secret.write_text(content)
        with pytest.raises(SystemExit):
            main(["--peer-name", "dc1", "--peer-uri", PEER, "--password-file", str(secret)])
        assert error in capsys.readouterr().err
        secret.unlink(missing_ok=True)
    secret.write_text("from-the-file\n")
    assert main(["--peer-name", "dc1", "--peer-uri", PEER, "--password-file", str(secret)]) == 0
    written = capsys.readouterr().out
    assert '"federation-upstream": "dc1"' in written and "from-the-file" not in written
    with pytest.raises(SystemExit):  # a bad URI: the reason, no traceback
        main(
            ["--peer-name", "dc1", "--peer-uri", "amqp://dc1:5672/", "--password-file", str(secret)]
        )
    assert "ends in '/'" in capsys.readouterr().err
