"""A test namespace's cleanup removes every work queue the platform declares in it: a quorum
queue left behind holds one of the shared broker's file handles (deploy/labs/leftovers.py)."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil

import pytest

import shared.contracts
from deploy.labs.namespaces import RABBITMQ_URL, WORK_QUEUES, remove_namespace
from shared.bus.amqp import AmqpBus
from shared.contracts.accounting import CALLS_QUEUE
from tests.shared.bus.test_amqp import rabbitmqctl


def test_every_work_queue_of_the_contracts_goes_with_a_namespace() -> None:
    """Accounting's is the exception: its tests delete it themselves, after the service stops."""
    named = {
        value
        for module in pkgutil.iter_modules(shared.contracts.__path__)
        for name, value in vars(importlib.import_module(f"shared.contracts.{module.name}")).items()
        if name.endswith("_QUEUE") and isinstance(value, str)
    }
    assert named - set(WORK_QUEUES) == {CALLS_QUEUE}


@pytest.mark.integration
async def test_removing_a_namespace_leaves_none_of_its_queues(namespace: str) -> None:
    bus = AmqpBus(RABBITMQ_URL, namespace, "test", "declares")
    await bus.start()
    for queue in WORK_QUEUES:
        await bus.declare_queue(queue)
    await bus.close()
    await asyncio.to_thread(remove_namespace, namespace)
    listing = await rabbitmqctl("list_queues", "--no-table-headers", "name")
    assert [name for name in listing.split() if name.startswith(f"{namespace}.")] == []
