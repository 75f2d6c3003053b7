"""What the bus says of a node never carries its password."""

from __future__ import annotations

from shared.bus.nodes import node_address, without_credentials


def test_an_error_quoting_its_urls_loses_their_credentials() -> None:
    text = (
        "AMQPConnectionError: cannot connect to amqp://admin:s3cr%40t@10.0.0.1:5672/ "
        "nor amqps://guest:guest@rabbit-2/vhost; amqp://rabbit-3/ refused"
    )
    assert without_credentials(text) == (
        "AMQPConnectionError: cannot connect to amqp://10.0.0.1:5672/ "
        "nor amqps://rabbit-2/vhost; amqp://rabbit-3/ refused"
    )


def test_a_password_holding_an_at_sign_goes_whole() -> None:
    text = "amqp://u:p@ss@rabbit:5672/ refused"
    assert without_credentials(text) == "amqp://rabbit:5672/ refused"


def test_a_node_address_is_its_host_and_port() -> None:
    assert node_address("amqp://admin:secret@10.0.0.1/") == "10.0.0.1:5672"
    assert node_address("amqps://admin:secret@rabbit:5999/v") == "rabbit:5999"
