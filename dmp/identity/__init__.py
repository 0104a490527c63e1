"""Identity lifecycle: expiry, opt-outs, deletion, consent, the ID graph, partner IDs, bots.

``maintain`` is the nightly pass the ``expire`` job runs; the CLI commands
``optout``, ``delete``, ``idsync`` and ``explain`` call the modules directly.
"""

from __future__ import annotations

from datetime import datetime

from dmp.clock import utcnow
from dmp.config import Config
from dmp.identity.bots import flag_bots
from dmp.identity.consent import refresh_decisions
from dmp.identity.expiry import expire
from dmp.identity.graph import build_groups
from dmp.store import Store


def maintain(
    store: Store, config: Config, now: datetime | None = None, dry_run: bool = False
) -> dict:
    """Expire stale IDs and old events, then refresh what profiling relies on.

    Order matters: expiry first, so bots, the ID graph and consent decisions
    are computed over what is kept.
    """
    now = now or utcnow()
    result = expire(store, config, now, dry_run=dry_run)
    if dry_run:
        return result
    result["bots"] = flag_bots(store, config)["bots"]
    result["id_graph"] = build_groups(store)
    result["consent"] = refresh_decisions(store, config, now)
    return result
