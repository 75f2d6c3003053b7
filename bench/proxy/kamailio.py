"""Kamailio as the proxy under test: the yardstick Callmesh's edge is held to.

Kamailio 5.6 with drouting reading db_text files generated from the routing
table, started in the foreground so the runner owns the process tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.proxy.proxy import Launch
from bench.proxy.routing import LOOPBACK, RoutingTable

CONFIG = Path(__file__).with_name("kamailio.cfg")

# Column headers and schema versions drouting 5.6 checks in its db_text tables.
_TABLE_HEADERS = {
    "dr_gateways": "gwid(int,auto) type(int) address(string) strip(int) "
    "pri_prefix(string,null) attrs(string,null) description(string)",
    "dr_rules": "ruleid(int,auto) groupid(string) prefix(string) timerec(string) "
    "priority(int) routeid(string) gwlist(string) description(string)",
    "dr_groups": "id(int,auto) username(string) domain(string) groupid(int) description(string)",
    "dr_gw_lists": "id(int,auto) gwlist(string) description(string)",
    "version": "id(int,auto) table_name(string) table_version(int)",
}
_SCHEMA_VERSIONS = {"dr_gateways": 3, "dr_rules": 3, "dr_groups": 2, "dr_gw_lists": 1}
# drouting requires a time recurrence; a start in the past without an end is "always".
_ALWAYS = "20000101T000000"


def _field(value: object) -> str:
    """db_text separates columns with ':', so it must be escaped inside values."""
    return str(value).replace("\\", "\\\\").replace(":", "\\:")


def _rows(*rows: tuple[object, ...]) -> list[str]:
    return [":".join(_field(value) for value in row) for row in rows]


def write_dbtext(table: RoutingTable, directory: Path) -> None:
    """The drouting tables for ``table``, with no routing groups by user (group given)."""
    directory.mkdir(parents=True, exist_ok=True)
    content = {
        "dr_gateways": _rows(
            *(
                (gw.id, 0, f"{gw.host}:{gw.port}", 0, "", "", gw.description)
                for gw in table.gateways
            )
        ),
        "dr_rules": _rows(
            *(
                (
                    rule.id,
                    rule.group,
                    rule.prefix,
                    _ALWAYS,
                    rule.priority,
                    0,
                    ",".join(map(str, rule.gateway_ids)),
                    f"prefix {rule.prefix}",
                )
                for rule in table.rules
            )
        ),
        "dr_groups": [],
        "dr_gw_lists": [],
        "version": _rows(
            *(
                (index, name, version)
                for index, (name, version) in enumerate(_SCHEMA_VERSIONS.items(), 1)
            )
        ),
    }
    for name, rows in content.items():
        (directory / name).write_text("\n".join([_TABLE_HEADERS[name], *rows]) + "\n")


@dataclass(frozen=True, slots=True)
class Kamailio:
    """Kamailio doing the edge's job; defaults follow the benchmark issue."""

    port: int = 15060
    binary: str = "kamailio"
    fr_timer_ms: int = 2000
    fr_inv_timer_ms: int = 10000
    shm_mb: int = 1024
    pkg_mb: int = 32

    @property
    def name(self) -> str:
        return "kamailio"

    def launch(self, table: RoutingTable, workdir: Path) -> Launch:
        dbtext = workdir / "kamailio-dbtext"
        write_dbtext(table, dbtext)
        return Launch(
            argv=[
                self.binary,
                "-f",
                str(CONFIG),
                "-l",
                f"udp:{LOOPBACK}:{self.port}",
                "-A",
                f'BENCH_DB_URL="text://{dbtext}"',
                "-A",
                f"BENCH_FR_TIMER={self.fr_timer_ms}",
                "-A",
                f"BENCH_FR_INV_TIMER={self.fr_inv_timer_ms}",
                "-m",
                str(self.shm_mb),
                "-M",
                str(self.pkg_mb),
                "-x",
                "tlsf",
                "-X",
                "tlsf",
                "-P",
                str(workdir / "kamailio.pid"),
                "-DD",
                "-E",
            ]
        )
