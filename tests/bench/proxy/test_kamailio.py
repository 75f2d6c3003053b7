from __future__ import annotations

from pathlib import Path

from bench.proxy.kamailio import Kamailio, write_dbtext
from bench.proxy.routing import seed_table


def test_dbtext_tables_hold_the_seed_table_with_escaped_addresses(tmp_path: Path) -> None:
    write_dbtext(seed_table(5071, 5072), tmp_path)

    gateways = (tmp_path / "dr_gateways").read_text().splitlines()
    rules = (tmp_path / "dr_rules").read_text().splitlines()
    assert gateways[1:] == [
        r"1:0:127.0.0.1\:5071:0:::PSTN 1",
        r"2:0:127.0.0.1\:5072:0:::PSTN 2",
    ]
    assert [row.split(":")[1:3] + row.split(":")[6:7] for row in rules[1:]] == [
        ["0", "1407", "1,2"],
        ["0", "44", "2"],
        ["0", "33", "1,2"],
        ["0", "91", "2,1"],
    ]
    versions = (tmp_path / "version").read_text().splitlines()[1:]
    assert "1:dr_gateways:3" in versions
    assert "2:dr_rules:3" in versions
    assert (tmp_path / "dr_groups").read_text().count("\n") == 1


def test_launch_points_kamailio_at_the_generated_tables(tmp_path: Path) -> None:
    launch = Kamailio(port=25060).launch(seed_table(5071, 5072), tmp_path)

    argv = launch.argv
    assert argv[argv.index("-l") + 1] == "udp:127.0.0.1:25060"
    assert f'BENCH_DB_URL="text://{tmp_path}/kamailio-dbtext"' in argv
    assert argv[argv.index("-m") + 1 : argv.index("-m") + 2] == ["1024"]
    assert {"-DD", "-E"} <= set(argv)
    assert (tmp_path / "kamailio-dbtext" / "dr_rules").is_file()
