"""Scheduled jobs: one thin module per job, each a ``run(store, config, now)`` that
calls into ``dmp`` and returns a JSON-ready summary. ``JOBS`` lists them in
pipeline order. Every run goes through
``dmp.scheduler.Runner``, which records the summary (a ``warnings`` list is
welcome) in ``job_runs``; ``config/schedule.toml`` says when each job runs.
"""

from jobs import cluster, expire, ingest, lookalike, profile, segments, sync

JOBS = {
    "ingest": ingest.run,
    "expire": expire.run,
    "profile": profile.run,
    "segments": segments.run,
    "cluster": cluster.run,
    "lookalike": lookalike.run,
    "sync": sync.run,
}
