"""Activation: stored destinations, one connector per ad platform, and the delta sync
that makes each platform hold exactly the desired members of each linked segment.

``destinations`` stores destinations and links; ``base`` is the connector base
class (batching, rate limit, retries, breaker, dry-run); ``connectors/`` holds one
small class per platform; ``sync`` computes deltas, pushes them and records runs.
"""

from dmp.activation.destinations import (
    add_destination,
    link_segment,
    list_destinations,
    unlink_segment,
)
from dmp.activation.sync import history, sync

__all__ = [
    "add_destination",
    "history",
    "link_segment",
    "list_destinations",
    "sync",
    "unlink_segment",
]
