"""``python -m deploy.docs [api|settings|all] [--check]``: rewrite the generated docs.

``--check`` writes nothing and exits 1 naming each stale page (what the tests assert).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from deploy.docs.api import process_openapi, render_api, service_openapi

ROOT = Path(__file__).resolve().parents[2]
API_PAGE = ROOT / "docs" / "api.md"


def api_page() -> str:
    from services.__main__ import ALL_SERVICES  # the list the all-in-one runs

    services = [(service.name, service_openapi(service)) for service in ALL_SERVICES]
    return render_api(process_openapi(), services)


PAGES: dict[str, tuple[Path, Callable[[], str]]] = {"api": (API_PAGE, api_page)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.docs", description=__doc__)
    parser.add_argument("page", nargs="?", default="all", choices=[*PAGES, "all"])
    parser.add_argument("--check", action="store_true", help="only report stale pages")
    args = parser.parse_args(argv)
    stale = 0
    for name, (path, render) in PAGES.items():
        if args.page not in (name, "all"):
            continue
        text = render()
        if path.exists() and path.read_text() == text:
            continue
        if args.check:
            print(f"{path.relative_to(ROOT)} is stale: run python -m deploy.docs {name}")
            stale += 1
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
