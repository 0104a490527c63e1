"""The scheduler stage: when jobs run (``schedule``), how each run is made and
recorded in ``job_runs`` (``runner``), and APScheduler plus graceful shutdown
for `dmp scheduler` and `dmp serve` (``service``). The jobs themselves live in
the top-level ``jobs`` package and are handed in, so the library never imports it.
"""

from dmp.scheduler.runner import JobRun, RunHandle, Runner, ShuttingDown, UnknownJob
from dmp.scheduler.schedule import Schedule, load_schedule
from dmp.scheduler.service import (
    Stop,
    create_scheduler,
    run_chain,
    run_in_order,
    serve_until_stopped,
)

__all__ = [
    "JobRun",
    "RunHandle",
    "Runner",
    "Schedule",
    "ShuttingDown",
    "Stop",
    "UnknownJob",
    "create_scheduler",
    "load_schedule",
    "run_chain",
    "run_in_order",
    "serve_until_stopped",
]
