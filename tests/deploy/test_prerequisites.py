"""`make test`'s set-up on a fresh machine: what it cannot provide it names in its first line;
a local Redis that is down it starts (a real redis-server on a port of the test's own)."""

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from deploy.labs.ports import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SCRIPT = DEPLOY / "test-prerequisites.sh"


def _run(
    script: Path, env: dict[str, str], *, as_nobody: bool = False
) -> subprocess.CompletedProcess[str]:
    command = ["bash", str(script)]
    if as_nobody and os.geteuid() == 0:
        command = ["runuser", "-u", "nobody", "--", *command]
    return subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False
    )


def test_every_listed_command_is_there_after_set_up() -> None:
    for line in (DEPLOY / "test-packages.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            command = line.split()[0]
            assert shutil.which(command, path=os.environ["PATH"] + ":/usr/sbin:/sbin"), command


def test_a_missing_package_is_named_in_the_first_line_when_it_cannot_be_installed() -> None:
    with tempfile.TemporaryDirectory() as folder:  # readable by `nobody`, unlike pytest's tmp_path
        Path(folder).chmod(0o755)
        script = Path(folder) / SCRIPT.name
        shutil.copy(SCRIPT, script)
        (Path(folder) / "test-packages.txt").write_text(
            "# comment\nno-such-command-x no-such-package-x\n"
        )
        result = _run(script, {}, as_nobody=True)
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]
    assert "missing system packages: no-such-package-x" in first


def test_a_local_redis_that_is_down_is_started() -> None:
    port = free_port()
    result = _run(SCRIPT, {"CALLMESH_TEST_REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    try:
        assert result.returncode == 0, result.stderr
        assert f"starting Redis on 127.0.0.1:{port}" in result.stdout
        with socket.create_connection(("127.0.0.1", port), timeout=5) as redis:
            redis.sendall(b"PING\r\n")
            assert redis.recv(16) == b"+PONG\r\n"
    finally:
        subprocess.run(
            ["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True, check=False
        )


def test_a_remote_service_that_is_unreachable_is_named_not_started() -> None:
    result = _run(SCRIPT, {"CALLMESH_TEST_RABBITMQ_URL": "amqp://u:secret@broker.invalid:5672/"})
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith(
        "make test: RabbitMQ is not reachable at broker.invalid:5672"
    )
    assert "secret" not in result.stderr
