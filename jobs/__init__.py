"""Scheduled jobs: one thin module per job, each a ``run(store, config, now)`` that
calls into ``dmp`` and returns a JSON-ready summary. ``JOBS`` lists them in
pipeline order; more arrive with their stages.
"""

from jobs import expire, ingest, profile

JOBS = {"ingest": ingest.run, "expire": expire.run, "profile": profile.run}
