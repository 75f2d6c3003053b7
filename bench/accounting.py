"""Accounting benchmark: call events through the service into PostgreSQL, and the CSV export.

Run: ``.venv/bin/python -m bench.accounting [--calls N] [--live-calls N] [--records N]``
against the environment's RabbitMQ and PostgreSQL (a fresh namespace and a
fresh database, both removed afterwards).

1. Throughput: the events of ``--calls`` answered calls (7 events each, as an
   edge sends them: started, two branches, ringing, answered, an UPDATE, the
   BYE) are published first, confirmed by the broker, while no service
   consumes (the fill: its events/s are the load generator's, printed apart);
   then the service starts consuming and the clock runs until its last
   completion is announced (the drain: the service's own rate, with
   no publisher beside it on the cores): events/s, calls/s, and this
   process's CPU per call meanwhile, i.e. the service's (the bench only reads
   an in-process counter until then; the records are counted once after).
   Once per ``--batch`` size: events sent alone (1), or as ``edge.call.batch``
   messages of that many (what an edge under load sends), in the same run.
   The service announces completions one a message, or with
   ``--completed-batch`` N in ``accounting.cdr.completed.batch`` messages of
   up to N (``CALLMESH_ACCOUNTING_COMPLETED_BATCH``).
2. Lag: ``--live-calls`` calls placed at ``--rate`` calls/s while the
   service runs, by a process of their own as an edge places them
   (``bench.accounting_edge``: paced by the clock, in messages of the run's
   batch size; the rate it achieved is printed as ``placed_per_s``), which
   also reads the completions; the lag is from each BYE's publish to its
   ``accounting.cdr.completed`` (published after the commit: the record is
   visible): median and p99.
3. Bytes per record in PostgreSQL: the two tables with their indexes and
   TOAST, divided by the records.
4. The CSV export of ``--records`` records (bulk-inserted first), in a child
   process: rows/s and the child's peak RSS, which must not grow with N.

The service runs on uvloop, with its garbage-collector settings, as
``python -m services.accounting`` does (`shared.runner`,
`services.accounting.gc_tuning`).

Steps 1-3 run ``--runs`` times (a fresh namespace and database each); the
figures printed are their medians, then each run's throughput and lag.  The
machine's load average is printed with them: on a shared machine it moves the
figures more than anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import fakeredis
import uvloop
from pydantic import SecretStr
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from services.accounting import metrics
from services.accounting.api.cdrs import csv_lines
from services.accounting.fold import fold_call
from services.accounting.gc_tuning import tune_for_batches
from services.accounting.queries import Filters, RecordQueries
from services.accounting.schema import cdrs
from services.accounting.service import AccountingService
from services.accounting.settings import AccountingSettings
from services.accounting.store import database_url, open_engine
from shared.bus.amqp import AmqpBus
from shared.contracts.call_event_json import written_batch_of
from shared.contracts.calls import (
    BranchTried,
    CallAnswered,
    CallEnded,
    CallEvent,
    CallRinging,
    CallStarted,
    CallUpdated,
)
from shared.service import Runtime
from shared.settings import Settings
from shared.store import Store

RABBITMQ_URL = os.environ.get("CALLMESH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
POSTGRES_URL = os.environ.get(
    "CALLMESH_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def call_events(call_id: str, t0: float) -> list[CallEvent]:
    """One answered call's events, the BYE last."""
    tag, edge = "ft", "edge-a"
    return [
        CallStarted(
            call_id=call_id,
            from_tag=tag,
            at=t0,
            edge=edge,
            caller="sip:+4420794600@example.com",
            callee_dialled="0033123456789",
            callee="+33123456789",
            source="192.0.2.10:5060",
            transport="udp",
            subscriber="alice@example.com",
            rule="fr",
            group="eu",
            carrier="c1",
        ),
        BranchTried(
            call_id=call_id,
            from_tag=tag,
            at=t0 + 0.4,
            edge=edge,
            target="gw0",
            target_kind="gateway",
            address="198.51.100.1:5060",
            sent_at=t0 + 0.01,
            status=503,
        ),
        BranchTried(
            call_id=call_id,
            from_tag=tag,
            at=t0 + 3,
            edge=edge,
            target="gw1",
            target_kind="gateway",
            address="198.51.100.2:5060",
            sent_at=t0 + 0.41,
            status=200,
        ),
        CallRinging(call_id=call_id, from_tag=tag, at=t0 + 1, edge=edge, status=180),
        CallAnswered(
            call_id=call_id,
            from_tag=tag,
            to_tag="tt",
            at=t0 + 3,
            edge=edge,
            target="gw1",
            target_kind="gateway",
            address="198.51.100.2:5060",
        ),
        CallUpdated(
            call_id=call_id, from_tag=tag, to_tag="tt", at=t0 + 30, edge=edge, method="UPDATE"
        ),
        CallEnded(call_id=call_id, from_tag=tag, to_tag="tt", at=t0 + 90, edge=edge, status=200),
    ]


def completions_announced() -> float:
    """``accounting.cdr.completed`` published so far by the services of this process.

    The counter's own samples, not the registry's lookup: that collects every metric of
    the process (the process collector reads ``/proc``) on each of the drain's polls,
    100 a second, CPU the drain's figures would count as the service's.
    """
    for metric in metrics.COMPLETED.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                return float(sample.value)
    return 0.0


class Bench:
    def __init__(self, args: argparse.Namespace, batch: int = 1) -> None:
        self.args = args
        self.batch = batch
        self.namespace = f"bench-{uuid.uuid4().hex[:10]}"
        self.database = f"callmesh_bench_{uuid.uuid4().hex[:10]}"
        self.url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{self.database}"
        self.buses: list[AmqpBus] = []
        self.results: dict[str, Any] = {}

    async def admin(self, statement: str) -> None:
        engine = create_async_engine(database_url(POSTGRES_URL, ""), isolation_level="AUTOCOMMIT")
        async with engine.connect() as connection:
            await connection.execute(text(statement))
        await engine.dispose()

    async def bus(self, service: str) -> AmqpBus:
        bus = AmqpBus(RABBITMQ_URL, self.namespace, service, f"{service}-1")
        await bus.start()
        self.buses.append(bus)
        return bus

    async def service(self, *, start: bool = True) -> AccountingService:
        settings = Settings(namespace=self.namespace)
        config = AccountingSettings(
            database_url=SecretStr(self.url),
            consumers=self.args.consumers,
            completed_batch=self.args.completed_batch,
            close_interval=3600,
        )
        bus = await self.bus("accounting")
        store = Store(fakeredis.FakeAsyncRedis(), self.namespace)  # the service never uses it
        runtime = Runtime(settings, bus, store, logging.getLogger("bench.accounting"))
        service = AccountingService(runtime, config)
        if start:
            await service.start()
        return service

    async def run(self, export: bool) -> None:
        await self.admin(f'CREATE DATABASE "{self.database}"')
        try:
            await self.throughput()
            await self.lag()
            await self.size()
            if export:
                await self.export()
        finally:
            for bus in self.buses:
                await bus.close()
            for bus in self.buses:
                await bus.delete_topology()
            await self.admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    async def complete_count(self, service: AccountingService) -> int:
        async with service.records.engine.connect() as connection:
            query = select(func.count()).select_from(cdrs).where(cdrs.c.state == "complete")
            return int((await connection.execute(query)).scalar_one())

    async def throughput(self) -> None:
        calls = self.args.calls
        first = await self.service()  # declares and binds the queue, then steps aside
        await first.stop()
        await self.buses.pop().close()
        edge = await self.bus("edge")
        t0 = time.time()
        events = [e for n in range(calls) for e in call_events(f"load-{n}", t0 + n * 0.001)]
        filling = time.perf_counter()
        if self.batch == 1:
            for event in events:
                await edge.publish(event)
        else:
            for at in range(0, len(events), self.batch):
                await edge.publish(written_batch_of(events[at : at + self.batch]))
        filled = time.perf_counter() - filling
        announced = completions_announced()
        service = await self.service(start=False)  # connected to the bus, not consuming yet
        started, cpu = time.perf_counter(), time.process_time()
        await service.start()
        async with asyncio.timeout(300):
            while True:
                if completions_announced() >= announced + calls:
                    break
                await asyncio.sleep(0.01)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        complete = await self.complete_count(service)
        assert complete == calls, f"{complete} complete records of {calls} calls"
        self.service_running = service
        self.results["throughput"] = {
            "calls": calls,
            "batch": self.batch,
            "events": calls * 7,
            "fill_seconds": round(filled, 2),
            "fill_events_per_s": round(calls * 7 / filled),
            "seconds": round(elapsed, 2),
            "events_per_s": round(calls * 7 / elapsed),
            "calls_per_s": round(calls / elapsed),
            "cpu_ms_per_call": round(cpu * 1000 / calls, 3),
            "load_average": round(os.getloadavg()[0], 1),
        }

    async def lag(self) -> None:
        """The lag from each call's BYE to its completion, the calls placed and their
        completions read by a process of their own (`bench.accounting_edge`)."""
        edge = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.accounting_edge", self.namespace,
            str(self.args.live_calls), str(self.args.rate), str(self.batch),
            stdout=subprocess.PIPE,
        )  # fmt: skip # one command
        output, _ = await edge.communicate()
        assert edge.returncode == 0, "the live load's process failed"
        self.results["lag_ms"] = json.loads(output.decode().strip().splitlines()[-1])

    async def size(self) -> None:
        engine = self.service_running.records.engine
        async with engine.connect() as connection:
            total = (
                await connection.execute(
                    text(
                        "SELECT pg_total_relation_size('cdrs') + "
                        "pg_total_relation_size('call_events')"
                    )
                )
            ).scalar_one()
            records = (
                await connection.execute(select(func.count()).select_from(cdrs))
            ).scalar_one()
        self.results["bytes_per_record"] = round(total / records)
        await self.service_running.stop()

    async def export(self) -> None:
        records = self.args.records
        template = fold_call(call_events("x", time.time()))[0]
        engine = open_engine(database_url(self.url, ""))
        started = time.perf_counter()
        async with engine.begin() as connection:
            for offset in range(0, records, 5000):
                rows = []
                for n in range(offset, min(offset + 5000, records)):
                    record = template.model_copy(update={"call_id": f"csv-{n}"})
                    rows.append(
                        {
                            "call_id": record.call_id,
                            "from_tag": "ft",
                            "version": 7,
                            "state": "complete",
                            "disposition": "answered",
                            "setup_ms": round(record.setup_at * 1000) - n,
                            "answer_ms": 1,
                            "last_seen_ms": 1,
                            "duration_ms": record.duration_ms,
                            "billable_seconds": record.billable_seconds,
                            "caller": record.caller,
                            "callee": record.callee,
                            "gateway": "gw-csv",
                            "rule": record.rule,
                            "subscriber": record.subscriber,
                            "record": record.model_dump_json(),
                        }
                    )
                await connection.execute(insert(cdrs), rows)
        await engine.dispose()
        inserted = time.perf_counter() - started
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.accounting",
            "--export-from",
            self.url,
            stdout=subprocess.PIPE,
        )
        output, _ = await child.communicate()
        figures = json.loads(output.decode().strip().splitlines()[-1])
        self.results["csv_export"] = {
            "records": records,
            "insert_s": round(inserted, 1),
            **figures,
        }


async def export_child(url: str) -> dict[str, Any]:
    """Stream the whole CSV of the ``gw-csv`` records; time, bytes, this process's peak RSS."""
    engine = open_engine(database_url(url, ""))
    queries = RecordQueries(engine)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    size = rows = 0
    async for chunk in csv_lines(queries, Filters(gateway="gw-csv")):
        size += len(chunk)
        rows += chunk.count("\n")
    elapsed = time.perf_counter() - started
    await engine.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "rows": rows - 1,
        "seconds": round(elapsed, 2),
        "rows_per_s": round((rows - 1) / elapsed) if elapsed else 0,
        "mb": round(size / 1e6, 1),
        "peak_rss_mb": round(peak / 1024, 1),
        "rss_growth_mb": round((peak - baseline) / 1024, 1),
    }


def medians(runs: list[Any]) -> Any:
    """Each figure's median over the runs (same shape as one run's figures)."""
    first = runs[0]
    if isinstance(first, dict):
        return {key: medians([run[key] for run in runs]) for key in first}
    value = statistics.median(runs)
    return int(value) if float(value).is_integer() else round(value, 2)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.accounting", description=__doc__)
    parser.add_argument("--calls", type=int, default=2000, help="calls for the throughput run")
    parser.add_argument("--live-calls", type=int, default=300, help="calls for the lag run")
    parser.add_argument("--rate", type=float, default=50.0, help="calls/s of the lag run")
    parser.add_argument("--records", type=int, default=20000, help="records for the CSV export")
    parser.add_argument(
        "--consumers",
        type=int,
        default=AccountingSettings.model_fields["consumers"].default,
        help="CALLMESH_ACCOUNTING_CONSUMERS",
    )
    parser.add_argument(
        "--completed-batch",
        type=int,
        default=AccountingSettings.model_fields["completed_batch"].default,
        help="CALLMESH_ACCOUNTING_COMPLETED_BATCH",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of steps 1-3 (medians)")
    parser.add_argument(
        "--batch",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 64],
        help="call events per message in the throughput step, comma-separated (1: alone)",
    )
    parser.add_argument("--export-from", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.export_from:
        print(json.dumps(uvloop.run(export_child(args.export_from))))
        return 0
    tune_for_batches()
    runs: dict[int, list[Any]] = {batch: [] for batch in args.batch}
    for n in range(args.runs):  # the batch sizes alternate: each run sees the same load
        for batch in args.batch:
            bench = Bench(args, batch)
            last = n == args.runs - 1 and batch == args.batch[-1]
            uvloop.run(bench.run(export=last))
            runs[batch].append(bench.results)
    pipeline = ("throughput", "lag_ms", "bytes_per_record")
    figures = {
        f"batch_{batch}": medians([{key: run[key] for key in pipeline} for run in done])
        for batch, done in runs.items()
    }
    figures["csv_export"] = runs[args.batch[-1]][-1].get("csv_export")
    each = [
        {"batch": batch, "throughput": run["throughput"], "lag_ms": run["lag_ms"]}
        for batch, done in runs.items()
        for run in done
    ]
    settings = {"consumers": args.consumers, "completed_batch": args.completed_batch}
    print(json.dumps({"runs": args.runs, **settings, **figures, "each_run": each}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
