"""The Sentinel configuration the lab runs is the deployment's template, filled completely."""

from __future__ import annotations

from pathlib import Path

from deploy.two_dc.servers import DOWN_AFTER_MS, SENTINEL_SERVICE, sentinel_config


def test_the_template_is_filled_for_a_lab_sentinel_with_a_quorum_of_two() -> None:
    config = sentinel_config(26379, 6379, Path("/var/lib/sentinel"))
    settings = [line for line in config.splitlines() if line and not line.startswith("#")]
    assert "$" not in "\n".join(settings)
    assert f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 6379 2" in settings
    assert f"sentinel down-after-milliseconds {SENTINEL_SERVICE} {DOWN_AFTER_MS}" in settings
    assert {"port 26379", "bind 127.0.0.1", "dir /var/lib/sentinel"} <= set(settings)
