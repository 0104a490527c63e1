"""Delta sync: make every destination hold exactly the desired members of each linked
segment, and record each run.

For one destination and segment:

- desired: current members (``expires_at > now``) that are still devices (not expired
  or forgotten), not bots, not opted out, of an ID type the platform takes and
  mappable to its ID (TTD's cookies only through ``partner_ids``). Segments are
  built from consented events only, so consent holds for desired too.
- held: ``destination_state``, what the platform confirmed, less per-item TTLs that
  have run out there.
- adds = desired - held; removes = held - desired (IDs that expired, opted out or
  were deleted fell out of desired when ``identity.forget`` removed them); refreshes
  = held members whose platform TTL is more than half spent.

State is written batch by batch, only for what the platform confirmed, so a crash,
a kill -9 or a failed batch leaves the rest to the next run, which computes the
delta again. Memberships stream from DuckDB in Arrow chunks, never whole.
Below the minimum audience (k-anonymity) nothing is pushed, and an audience that
would shrink below it is removed whole. A destination whose circuit breaker opens
is left for the next run while the others go on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dmp.activation.base import BatchResult, Connector, Item, Stats
from dmp.activation.destinations import Destination, all_destinations, find_segment, get_destination
from dmp.clock import iso, utcnow
from dmp.config import Config
from dmp.errors import DmpError
from dmp.store import Store

# The members a platform may hold (pid NULL: no ID it takes), computed once per sync of a
# segment into a temp table of the sync's own cursor, which every later query reads. One
# row per member: devices, a segment's members and a partner's matches are each kept
# unique on the keys joined here.
_ELIGIBLE = """
CREATE OR REPLACE TEMP TABLE eligible AS
SELECT m.id, m.id_type,
       CASE WHEN m.id_type = 'cookie' AND $via_partner THEN p.partner_id ELSE m.id END AS pid
FROM segment_members m
JOIN devices d ON d.id = m.id AND d.id_type = m.id_type
LEFT JOIN partner_ids p ON $via_partner AND m.id_type = 'cookie'
                       AND p.partner = $partner AND p.cookie_id = m.id
WHERE $active AND m.segment_id = $segment AND m.expires_at > $now
  AND NOT coalesce(d.bot, false) AND list_contains($id_types, m.id_type)
  AND NOT EXISTS (SELECT 1 FROM optouts o WHERE o.id = m.id AND o.id_type = m.id_type)
"""
# Every later query names every parameter (DuckDB refuses unused ones): they share this head.
_WITH = """
WITH desired AS (SELECT id, id_type, pid FROM eligible WHERE pid IS NOT NULL),
held AS (
    SELECT id, id_type, pid, coalesce(expires_at <= $refresh_before, false) AS due
    FROM destination_state
    WHERE destination_id = $destination AND segment_id = $segment
      AND (expires_at IS NULL OR expires_at > $now)
)
"""
_SAME = "x.id = y.id AND x.id_type = y.id_type AND x.pid = y.pid"
DELTAS = {
    "remove": f"SELECT id, id_type, pid FROM held x WHERE NOT EXISTS "
    f"(SELECT 1 FROM desired y WHERE {_SAME})",
    "add": f"SELECT id, id_type, pid FROM desired x WHERE NOT EXISTS "
    f"(SELECT 1 FROM held y WHERE {_SAME})",
    "refresh": f"SELECT id, id_type, pid FROM held x WHERE due AND EXISTS "
    f"(SELECT 1 FROM desired y WHERE {_SAME})",
    "remove_all": "SELECT id, id_type, pid FROM held",
}
_COUNTS = _WITH + (
    "SELECT (SELECT count(*) FROM desired), (SELECT count(*) FROM eligible WHERE pid IS NULL), "
    "(SELECT count(*) FROM held), "
    + ", ".join(f"(SELECT count(*) FROM ({DELTAS[op]}))" for op in ("add", "remove", "refresh"))
)
_PAIR = "destination_id = $destination AND segment_id = $segment"
# A confirmed batch: queued rows lo..hi, less the ones the platform did not confirm.
_CONFIRMED = (
    "c.rowid BETWEEN $lo AND $hi AND NOT list_contains($skip, c.rowid) "
    "AND s.destination_id = $destination AND s.segment_id = $segment "
    "AND s.id = c.id AND s.id_type = c.id_type AND s.pid = c.pid"
)
CONFIRM = {
    "add": "INSERT INTO destination_state "
    "SELECT $destination, $segment, id, id_type, pid, $now, $expires FROM sync_queue c "
    "WHERE c.rowid BETWEEN $lo AND $hi AND NOT list_contains($skip, c.rowid)",
    "refresh": "UPDATE destination_state s SET sent_at = $now, expires_at = $expires "
    f"FROM sync_queue c WHERE {_CONFIRMED}",
    "remove": f"DELETE FROM destination_state s USING sync_queue c WHERE {_CONFIRMED}",
}
RESULT_COUNTS = (
    "desired",
    "unmapped",
    "adds_sent",
    "removes_sent",
    "refreshes_sent",
    "accepted",
    "rejected",
    "failed",
    "requests",
    "retries",
    "throttled_seconds",
)


@dataclass(frozen=True)
class Link:
    segment_id: int
    segment: str  # its name, or "#ID" once the segment is gone
    external_id: str
    active: bool  # false once unlinked or the segment is gone: desired is empty
    retired: bool  # a retired cluster: its members expire, every sync says so


def sync(
    store: Store,
    config: Config,
    *,
    destination: str | None = None,
    segment: str | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    **connector_kwargs: Any,
) -> list[dict]:
    """Sync every linked segment (or the one destination / segment asked for); one
    result per destination and segment. ``dry_run`` builds and logs the requests but
    sends nothing and changes nothing. ``connector_kwargs`` (session, sleep, clocks)
    go to each connector, for tests and benchmarks."""
    now = now or utcnow()
    con = store.con
    if not dry_run:
        con.execute(
            "UPDATE sync_runs SET status = 'interrupted', finished_at = ? WHERE status = 'running'",
            [now],
        )
        keep_after = now - timedelta(days=config.get("store.history_days"))
        con.execute("DELETE FROM sync_runs WHERE started_at < ?", [keep_after])
    dests = [get_destination(con, destination)] if destination else all_destinations(con)
    segment_id = find_segment(con, segment)[0] if segment else None
    results = []
    for dest in dests:
        links = _links(store, dest, segment_id)
        if not links:
            continue
        connector = dest.connector(dry_run=dry_run, home=config.home, **connector_kwargs)
        try:
            for link in links:
                results.append(SegmentSync(store, config, connector, dest, link, now).run())
        finally:
            connector.close()
    if not dry_run:
        # An ID that left dmp can be forgotten here once no platform holds it any more.
        con.execute(
            """
            DELETE FROM identity_removals r WHERE NOT EXISTS (
                SELECT 1 FROM destination_state s WHERE s.id = r.id AND s.id_type = r.id_type)
            """
        )
    return results


def _links(store: Store, dest: Destination, segment_id: int | None) -> list[Link]:
    rows = store.con.execute(
        """
        SELECT l.segment_id, coalesce(s.name, '#' || l.segment_id::VARCHAR), l.external_id,
               l.active AND s.segment_id IS NOT NULL, coalesce(s.status = 'retired', false)
        FROM destination_segments l LEFT JOIN segments s USING (segment_id)
        WHERE l.destination_id = $dest AND ($segment IS NULL OR l.segment_id = $segment)
        ORDER BY 2
        """,
        {"dest": dest.destination_id, "segment": segment_id},
    ).fetchall()
    return [Link(*row) for row in rows]


class SegmentSync:
    """One sync of one segment to one destination, recorded as one row of sync_runs."""

    def __init__(
        self,
        store: Store,
        config: Config,
        connector: Connector,
        dest: Destination,
        link: Link,
        now: datetime,
    ):
        self.store, self.con, self.connector = store, store.con, connector
        self.link, self.now = link, now
        self.dry_run = connector.dry_run
        self.chunk_rows = config.get("activation.chunk_rows")
        caps = connector.capabilities
        self.floor = max(
            config.get("activation.min_audience"),
            connector.options.min_audience,
            caps.min_audience,
        )
        ttl_days = (
            getattr(connector.options, "ttl_days", None) if caps.ttl_scope == "item" else None
        )
        self.expires = now + timedelta(days=ttl_days) if ttl_days else None
        self.member_params = {
            "segment": link.segment_id,
            "now": now,
            "active": link.active,
            "via_partner": caps.cookies_via_partner,
            "partner": getattr(connector.options, "partner", None),
            "id_types": list(caps.id_types),
        }
        self.params = {
            "destination": dest.destination_id,
            "segment": link.segment_id,
            "now": now,
            "refresh_before": now + timedelta(days=ttl_days / 2) if ttl_days else None,
        }
        self.stats = Stats()
        self.result: dict[str, Any] = {
            "run_id": None,
            "destination": dest.name,
            "kind": dest.kind,
            "segment": link.segment,
            "external_id": link.external_id,
            "dry_run": self.dry_run,
            "status": "running",
            "reason": None,
            **{key: 0 for key in RESULT_COUNTS},
            "held": 0,
            "errors": {},
            "started_at": iso(now),
            "finished_at": None,
        }
        self.planned = 0

    def run(self) -> dict:
        started = time.monotonic()
        if not self.dry_run:
            self.result["run_id"] = self.con.execute(
                "INSERT INTO sync_runs (destination, segment, status, started_at) "
                "VALUES (?, ?, 'running', ?) RETURNING run_id",
                [self.result["destination"], self.result["segment"], self.now],
            ).fetchall()[0][0]
        # A cursor of its own, for the temp tables of this sync.
        with self.store.cursor() as self.reader:
            try:
                self._sync()
            except DmpError as exc:  # a missing secret, a bad option: this destination waits
                self.connector.breaker_reason = self.connector.breaker_reason or str(exc)
                self._status("failed", str(exc))
        # Any other exception leaves the row 'running', like a kill -9 would; the next
        # sync marks it interrupted and picks up from the confirmed state.
        self._finish(time.monotonic() - started)
        return self.result

    # --- planning ---------------------------------------------------------------

    def _sync(self) -> None:
        """Count desired, held and the deltas; decide what to send (or why not); send it."""
        if self.connector.breaker_open:
            return self._status("skipped", self.connector.breaker_reason)
        if not self.dry_run:
            self.con.execute(
                f"DELETE FROM destination_state WHERE {_PAIR} AND expires_at <= $now",
                {k: self.params[k] for k in ("destination", "segment", "now")},
            )
        self.reader.execute(_ELIGIBLE, self.member_params)
        desired, unmapped, held, adds, removes, refreshes = self.reader.execute(
            _COUNTS, self.params
        ).fetchall()[0]
        self.result.update(desired=desired, unmapped=unmapped)
        counts = {"add": adds, "remove": removes, "refresh": refreshes, "remove_all": held}
        reason = None
        if not self.link.active:
            ops, reason = ["remove_all"], "unlinked: removing every member pushed"
        elif desired < self.floor:
            if not held:
                return self._status(
                    "skipped", f"audience of {desired} is below the minimum of {self.floor}"
                )
            ops = ["remove_all"]
            reason = (
                f"audience of {desired} would be below the minimum of {self.floor}: "
                "whole audience removed"
            )
        elif held - removes < self.floor:  # adds first, so the audience never dips below
            ops = ["add", "remove", "refresh"]
        else:  # removals first: opt-outs and deletions reach the platform soonest
            ops = ["remove", "add", "refresh"]
        if self.connector.capabilities.snapshot:
            self._snapshot(ops, counts)
        else:
            for op in ops:
                self._push(op, counts[op])
            held_now = self._held()
            if self.link.active and 0 < held_now < self.floor and not self.dry_run:
                reason = (
                    f"only {held_now} confirmed, below the minimum of {self.floor}: removed whole"
                )
                self._push("remove_all", held_now)
        self._conclude(reason)

    def _conclude(self, reason: str | None) -> None:
        r = self.result
        failed = self._failed()
        if self.connector.breaker_open and (failed or not r["accepted"]):
            reason = self.connector.breaker_reason
        if failed:
            if not reason:
                top = next(iter(self.stats.errors.most_common(1)), ("unknown", 0))[0]
                reason = f"{failed} not confirmed, left for the next run: {top}"
            self._status("partial" if r["accepted"] else "failed", reason)
        else:
            self._status("partial" if r["rejected"] else "succeeded", reason)

    def _failed(self) -> int:
        """Changes planned that the platform neither confirmed nor refused."""
        r = self.result
        return max(0, self.planned - r["accepted"] - r["rejected"])

    def _status(self, status: str, reason: str | None) -> None:
        if self.link.retired and self.link.active:
            note = "retired cluster, still linked: its members expire through the segment TTL"
            reason = f"{note}; {reason}" if reason else note
        self.result["status"], self.result["reason"] = status, reason

    # --- sending ----------------------------------------------------------------

    def _push(self, op: str, expected: int) -> None:
        """Send one kind of change to the platform. The changes are queued in a temp table
        (numbered 0..n-1 by rowid), read back in chunks, and each batch the platform
        confirms is written to the state at once, by its queue numbers, in SQL."""
        if not expected:
            return
        reader = self.reader
        reader.execute(
            f"CREATE OR REPLACE TEMP TABLE sync_queue AS {_WITH}{DELTAS[op]}", self.params
        )
        queued = reader.execute("SELECT count(*) FROM sync_queue").fetchall()[0][0]
        self.planned += queued
        state_op = "remove" if op == "remove_all" else op

        def record(batch: BatchResult) -> None:
            self.result["accepted"] += len(batch.accepted)
            self.result["rejected"] += len(batch.rejected)
            if batch.accepted and not self.dry_run:
                self._confirm(state_op, batch.accepted)

        sent = self.stats.sent
        platform_op = "add" if op in ("add", "refresh") else "remove"
        items = self._queued(queued)
        self.connector.deliver(
            platform_op, self.link.external_id, items, queued, self.stats, record
        )
        key = {"add": "adds_sent", "refresh": "refreshes_sent"}.get(op, "removes_sent")
        self.result[key] += self.stats.sent - sent

    def _queued(self, count: int) -> Iterator[Item]:
        """The queue in order, ``activation.chunk_rows`` at a time. Each chunk is fetched
        whole, so the cursor is free to record confirmed batches in between."""
        sql = "SELECT pid, id_type, rowid FROM sync_queue WHERE rowid >= $lo AND rowid < $hi"
        for lo in range(0, count, self.chunk_rows):
            params = {"lo": lo, "hi": lo + self.chunk_rows}
            chunk = self.reader.sql(sql, params=params).to_arrow_table()
            columns = [chunk.column(i).to_pylist() for i in range(3)]
            yield from map(Item._make, zip(*columns, strict=True))

    def _confirm(self, op: str, items: list[Item]) -> None:
        """Write one confirmed batch to the state by its queue numbers, in SQL."""
        seqs = [item.seq for item in items]
        lo, hi = min(seqs), max(seqs)
        skip = [] if hi - lo + 1 == len(seqs) else sorted(set(range(lo, hi + 1)).difference(seqs))
        params = {"destination": self.params["destination"], "segment": self.link.segment_id}
        params |= {"lo": lo, "hi": hi, "skip": skip}
        if op != "remove":
            params |= {"now": self.now, "expires": self.expires}
        self.reader.execute(CONFIRM[op], params)

    def _snapshot(self, ops: list[str], counts: dict[str, int]) -> None:
        """File export: write the whole audience (or remove its file) and make the state
        the desired set in one transaction."""
        connector, target, reader = self.connector, self.link.external_id, self.reader
        self.stats.requests += 1
        if ops == ["remove_all"]:
            connector.remove(target)
            changed, sql = counts["remove_all"], None
            self.result["removes_sent"] = changed
        else:
            connector.export(reader, _WITH + "SELECT id, id_type FROM desired", self.params, target)
            changed = counts["add"] + counts["remove"]
            self.result.update(adds_sent=counts["add"], removes_sent=counts["remove"])
            sql = _WITH + "SELECT $destination, $segment, id, id_type, pid, $now, NULL FROM desired"
        self.planned += changed
        self.result["accepted"] += changed
        if self.dry_run:
            return
        reader.begin()
        try:
            keys = {k: self.params[k] for k in ("destination", "segment")}
            reader.execute(f"DELETE FROM destination_state WHERE {_PAIR}", keys)
            if sql:
                reader.execute(f"INSERT INTO destination_state {sql}", self.params)
        except BaseException:
            reader.rollback()
            raise
        reader.commit()

    # --- recording --------------------------------------------------------------

    def _held(self) -> int:
        return self.con.execute(
            f"SELECT count(*) FROM destination_state WHERE {_PAIR}",
            {"destination": self.params["destination"], "segment": self.link.segment_id},
        ).fetchall()[0][0]

    def _finish(self, seconds: float) -> None:
        r, stats = self.result, self.stats
        r.update(
            failed=self._failed(),
            requests=stats.requests,
            retries=stats.retries,
            throttled_seconds=round(stats.throttled_seconds, 3),
            bytes=stats.bytes,
            errors=dict(stats.errors.most_common()),
            finished_at=iso(self.now + timedelta(seconds=seconds)),
        )
        r["held"] = held = self._held()
        if self.dry_run:
            return
        if not self.link.active and not held:
            self.con.execute(
                f"DELETE FROM destination_segments WHERE {_PAIR}",
                {"destination": self.params["destination"], "segment": self.link.segment_id},
            )
        columns = ("status", "reason", *RESULT_COUNTS)
        self.con.execute(
            f"UPDATE sync_runs SET {', '.join(f'{c} = ?' for c in columns)}, "
            "finished_at = ?, errors = ? WHERE run_id = ?",
            [
                *(r[c] for c in columns),
                self.now + timedelta(seconds=seconds),
                json.dumps(r["errors"]),
                r["run_id"],
            ],
        )


def history(
    store: Store, destination: str | None = None, segment: str | None = None, limit: int = 20
) -> list[dict]:
    """The most recent sync runs, newest first."""
    columns = (
        "run_id",
        "destination",
        "segment",
        "status",
        "reason",
        "started_at",
        "finished_at",
        *RESULT_COUNTS,
        "errors",
    )
    rows = store.con.execute(
        f"""
        SELECT {", ".join(columns)} FROM sync_runs
        WHERE ($destination IS NULL OR destination = $destination)
          AND ($segment IS NULL OR segment = $segment)
        ORDER BY run_id DESC LIMIT $limit
        """,
        {"destination": destination, "segment": segment, "limit": limit},
    ).fetchall()
    result = []
    for row in rows:
        item = dict(zip(columns, row, strict=True))
        item["started_at"], item["finished_at"] = iso(item["started_at"]), iso(item["finished_at"])
        item["errors"] = json.loads(item["errors"]) if item["errors"] else {}
        result.append(item)
    return result
