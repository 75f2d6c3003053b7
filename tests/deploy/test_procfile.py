import importlib.util

from deploy.procfile import PROCFILE, parse_procfile


def test_parse_environment_and_command() -> None:
    entries = parse_procfile("# comment\n\nweb: A=1 B=x:y python -m services.edge --flag\n")
    assert entries == {"web": ({"A": "1", "B": "x:y"}, ["python", "-m", "services.edge", "--flag"])}


def test_every_procfile_entry_runs_a_real_module_on_its_own_ports() -> None:
    entries = parse_procfile(PROCFILE.read_text())
    assert {"routing", "registrar", "health", "accounting", "edge-a", "edge-b"} <= set(entries)
    listens = [env["CALLMESH_HTTP_LISTEN"] for env, _ in entries.values()]
    assert len(set(listens)) == len(listens)
    for _, argv in entries.values():
        assert argv[:2] == ["python", "-m"]
        assert importlib.util.find_spec(argv[2]) is not None, argv[2]
