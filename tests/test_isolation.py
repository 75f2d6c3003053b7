"""The unit-run guard (tests/isolation.py): unmarked tests cannot reach a broker or start SIPp."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.isolation import IsolationError, broker_ports, isolated

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def listener() -> Iterator[int]:
    """A local TCP port that accepts, standing in for a broker's."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def test_the_ports_come_from_the_test_urls() -> None:
    assert broker_ports("amqp://guest:guest@10.0.0.1:5673/", "redis://h:6380/0") == {
        5673: "RabbitMQ",
        6380: "Redis",
        5432: "PostgreSQL",
    }
    assert set(broker_ports("amqp://localhost/", "redis://localhost/0")) == {5672, 6379, 5432}


def test_a_connection_to_a_broker_port_is_refused_and_reported(listener: int) -> None:
    reports: list[str] = []
    with isolated({listener: "Redis"}, reports.append), socket.socket() as sock:
        with pytest.raises(IsolationError, match=r"connected to Redis at 127\.0\.0\.1"):
            sock.connect(("127.0.0.1", listener))
        with pytest.raises(IsolationError):
            sock.connect_ex(("127.0.0.1", listener))
    assert len(reports) == 2
    assert "mark the test integration or wire" in reports[0]


def test_other_ports_and_the_time_after_are_untouched(listener: int) -> None:
    other = listener + 1 if listener < 65535 else 1
    with isolated({other: "Redis"}, print), socket.create_connection(("127.0.0.1", listener)):
        pass
    with isolated({listener: "Redis"}, print):
        pass
    with socket.create_connection(("127.0.0.1", listener)):  # restored
        pass


async def test_asyncio_connections_are_refused_too(listener: int) -> None:
    reports: list[str] = []
    with isolated({listener: "RabbitMQ"}, reports.append), pytest.raises(IsolationError):
        await asyncio.open_connection("127.0.0.1", listener)
    assert reports and "RabbitMQ" in reports[0]


def test_sipp_is_not_started_other_programs_are() -> None:
    reports: list[str] = []
    with isolated({}, reports.append):
        for command in (["/usr/bin/sipp", "-sn", "uas"], "sipp -sn uac", ["kamailio", "-f", "x"]):
            with pytest.raises(IsolationError, match=r"started (sipp|kamailio)"):
                subprocess.Popen(command)
        assert subprocess.run([sys.executable, "-c", "pass"], check=False).returncode == 0
    assert len(reports) == 3


async def test_asyncio_subprocesses_are_refused_too() -> None:
    with isolated({}, print), pytest.raises(IsolationError):
        await asyncio.create_subprocess_exec("sipp", "-v")


def test_an_unmarked_test_fails_a_marked_one_passes(listener: int, tmp_path: Path) -> None:
    """The conftest's fixture, in a pytest run of its own on planted tests."""
    (tmp_path / "test_planted.py").write_text(
        "import socket, pytest\n"
        f"def connect():\n    socket.create_connection(('127.0.0.1', {listener})).close()\n"
        "def test_unmarked():\n    connect()\n"
        "def test_unmarked_swallowing():\n"
        "    try:\n        connect()\n    except Exception:\n        pass\n"
        "@pytest.mark.integration\ndef test_marked():\n    connect()\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "-W", "ignore::pytest.PytestUnknownMarkWarning", str(tmp_path / "test_planted.py")],
        check=False,
        cwd=ROOT,
        env={"CALLMESH_TEST_REDIS_URL": f"redis://127.0.0.1:{listener}/0", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip  # the pytest command line reads best on one line
    # test_unmarked fails (and errs at teardown), the swallowed one errs at teardown
    assert "1 failed, 2 passed, 2 errors" in run.stdout, run.stdout + run.stderr
    summary = [line.split("::")[-1] for line in run.stdout.splitlines() if "::" in line]
    assert "test_unmarked_swallowing" in summary
    assert "test_marked" not in summary
    assert "an unmarked test connected to Redis" in run.stdout
