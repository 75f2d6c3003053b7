"""``python -m services.accounting``: the accounting service alone, against RabbitMQ (and Redis).

Its records go to ``CALLMESH_ACCOUNTING_DATABASE_URL`` (PostgreSQL); unset, to an SQLite
file under ``CALLMESH_DATA_DIR``, which only one instance may use.
"""

from services.accounting.gc_tuning import tune_for_batches
from services.accounting.service import AccountingService
from shared.runner import main

tune_for_batches()
main([AccountingService], embedded_allowed=False)
