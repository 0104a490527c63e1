"""A seeded synthetic world: devices with planted interest personas, their logs,
seed lists and the ground truth, so clustering and lookalike quality can be
measured against what was planted.

Each device belongs to one persona (a mix of IAB Content Taxonomy 3.1
categories) and draws most page views from it, the rest from categories
popular with everyone and a little uniform noise. Conversions are planted on
personas (``propensity``), so a lookalike of converters has a true answer.

Devices in TCF countries carry an IAB TCF v2 consent string on every event:
most grant purposes 1-10, some deny profiling (purpose 3 or 4), a few send
strings that cannot be decoded; devices elsewhere send none.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from dmp.clock import utcnow
from dmp.ingest.readers import CANONICAL
from dmp.tcf import TCString, encode

# (name, content category IDs, conversion propensity). IDs are IAB Content Taxonomy 3.1.
PERSONAS: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("auto_intenders", ("30", "2", "37", "31", "32"), 0.08),
    ("new_parents", ("192", "142", "224", "482", "575"), 0.01),
    ("fitness", ("225", "229", "221", "231", "551"), 0.01),
    ("foodies", ("216", "214", "218", "217", "211"), 0.005),
    ("home_improvers", ("280", "276", "275", "283", "277"), 0.02),
    ("investors", ("410", "416", "80", "396", "415"), 0.03),
    ("travellers", ("655", "664", "663", "654", "444"), 0.01),
    ("gamers", ("684", "681", "682", "683", "632"), 0.005),
    ("fashion", ("560", "553", "577", "576", "590"), 0.005),
    ("tech_pros", ("597", "599", "638", "639", "632"), 0.01),
    ("pet_owners", ("425", "424", "431", "430", "428"), 0.005),
    ("sports_fans", ("533", "547", "484", "508", "545"), 0.005),
    ("home_buyers", ("451", "447", "442", "392", "398"), 0.04),
)
# Popular with everyone: Television, Music, Movies, Coupons and Discounts, Grocery Shopping.
BACKGROUND = ("640", "338", "324", "474", "477")
BACKGROUND_SHARE = 0.25
NOISE_SHARE = 0.03
COUNTRIES = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "CA", "AU")
COUNTRY_WEIGHTS = (0.40, 0.12, 0.10, 0.08, 0.06, 0.06, 0.06, 0.07, 0.05)
# Where a site's CMP asks for TCF consent (GDPR, and the UK's copy of it).
TCF_COUNTRIES = ("GB", "DE", "FR", "ES", "IT", "NL")
CONSENT_DENY_SHARE = 0.08
CONSENT_GARBAGE_SHARE = 0.01
CONSENT_VENDORS = frozenset({10, 32, 52, 755, 793})
EVENT_TYPES = ("pageview", "click", "video_view")
EVENT_WEIGHTS = (0.85, 0.10, 0.05)
CHUNK = 2_000_000


@dataclass
class World:
    """Parameters of a synthetic world; ``build`` materialises it inside DuckDB."""

    devices: int = 10_000
    events: int = 200_000
    seed: int = 42
    days: int = 30
    now: datetime | None = None
    maid_share: float = 0.4
    categorised_share: float = 0.7

    def build(self, con: duckdb.DuckDBPyConnection) -> None:
        """Create tables ``world_devices`` and ``world_events`` (all text, as logs are)."""
        rng = np.random.default_rng(self.seed)
        now = self.now or utcnow().replace(microsecond=0)
        devices, mix = self._devices(rng, now - timedelta(days=self.days))
        con.register("device_arrow", devices)
        con.execute("CREATE OR REPLACE TABLE world_devices AS SELECT * FROM device_arrow")
        con.unregister("device_arrow")
        con.execute(
            """
            CREATE OR REPLACE TABLE world_events (
                ts VARCHAR, id VARCHAR, id_type VARCHAR, url VARCHAR, event VARCHAR,
                category VARCHAR, keywords VARCHAR, country VARCHAR, consent VARCHAR,
                gpc VARCHAR, hem VARCHAR, maid VARCHAR, cookie VARCHAR, sort_key DOUBLE)
            """
        )
        counts = self._event_counts(rng)
        owner = np.repeat(np.arange(self.devices), counts)
        rng.shuffle(owner)
        start = now - timedelta(days=self.days)
        for lo in range(0, len(owner), CHUNK):
            chunk = self._events(rng, owner[lo : lo + CHUNK], devices, mix, start)
            con.register("event_arrow", chunk)
            con.execute("INSERT INTO world_events SELECT * FROM event_arrow")
            con.unregister("event_arrow")

    def _devices(self, rng: np.random.Generator, start: datetime) -> tuple[pa.Table, np.ndarray]:
        """Device attributes, and each device's own mix over its persona's categories."""
        n = self.devices
        persona = rng.integers(0, len(PERSONAS), n)
        is_maid = rng.random(n) < self.maid_share
        raw = rng.bytes(16 * n)
        ids = []
        for i in range(n):
            h = raw[16 * i : 16 * (i + 1)].hex()
            if is_maid[i]:
                ids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}")
            else:
                ids.append(f"ck{h[:22]}")
        base = np.array([p[2] for p in PERSONAS])[persona]
        propensity = np.clip(base * rng.lognormal(0.0, 0.3, n), 0, 1)
        converted = rng.random(n) < propensity
        has_email = rng.random(n) < 0.2
        emails = [f"user{i}.{self.seed}@example.com" if has_email[i] else None for i in range(n)]
        hems = [hashlib.sha256(e.encode()).hexdigest() if e else None for e in emails]
        # A third of cookie devices are also seen with the MAID of an app device of
        # the same persona (one person, web and app): ID links.
        link = np.full(n, -1)
        maids_by_persona = {
            p: np.flatnonzero(is_maid & (persona == p)) for p in range(len(PERSONAS))
        }
        for i in np.flatnonzero(~is_maid & (rng.random(n) < 0.33)):
            pool = maids_by_persona[persona[i]]
            if len(pool):
                link[i] = pool[rng.integers(0, len(pool))]
        ids_arr = np.array(ids, dtype=object)
        columns = {
            "id": ids,
            "id_type": np.where(is_maid, "maid", "cookie"),
            "os": np.where(is_maid, np.where(rng.random(n) < 0.5, "idfa", "gaid"), None),
            "persona": np.array([p[0] for p in PERSONAS])[persona],
            "persona_index": persona,
            "propensity": propensity,
            "converted": converted,
            "email": emails,
            "hem": hems,
            "linked_maid": np.where(link >= 0, ids_arr[np.maximum(link, 0)], None),
            "country": rng.choice(COUNTRIES, n, p=COUNTRY_WEIGHTS),
            "gpc": rng.random(n) < 0.03,
        }
        columns["consent"] = self._consent(columns["country"], start)
        return pa.table(columns), rng.dirichlet(np.full(5, 2.0), n)

    def _consent(self, country: np.ndarray, start: datetime) -> np.ndarray:
        """Each device's TCF string (None outside TCF countries), one of a few made once.

        Drawn from a stream of its own, so adding consent left every other
        attribute of a seeded world as it was.
        """
        rng = np.random.default_rng((self.seed, 2))
        grant, deny, garbage = consent_strings(start)
        roll = rng.random(len(country))
        pick = rng.integers(0, 1 << 16, len(country))
        choices = np.array(grant + deny + garbage, dtype=object)
        index = np.where(
            roll < CONSENT_GARBAGE_SHARE,
            len(grant) + len(deny) + pick % len(garbage),
            np.where(
                roll < CONSENT_GARBAGE_SHARE + CONSENT_DENY_SHARE,
                len(grant) + pick % len(deny),
                pick % len(grant),
            ),
        )
        return np.where(np.isin(country, TCF_COUNTRIES), choices[index], None)

    def _event_counts(self, rng: np.random.Generator) -> np.ndarray:
        """At least one event per device (when there are enough), heavy-tailed beyond."""
        n, m = self.devices, self.events
        if m < n:
            counts = np.zeros(n, dtype=np.int64)
            counts[rng.choice(n, m, replace=False)] = 1
            return counts
        weights = rng.lognormal(0.0, 1.0, n)
        return 1 + rng.multinomial(m - n, weights / weights.sum())

    def _events(
        self,
        rng: np.random.Generator,
        owner: np.ndarray,
        devices: pa.Table,
        device_mix: np.ndarray,
        start: datetime,
    ) -> pa.Table:
        k = len(owner)
        persona = devices["persona_index"].to_numpy()[owner]
        mix = device_mix[owner]
        own = np.array([p[1] for p in PERSONAS])
        pick = (rng.random(k)[:, None] > np.cumsum(mix, axis=1)).sum(axis=1).clip(0, 4)
        category = own[persona, pick]
        roll = rng.random(k)
        background = roll < BACKGROUND_SHARE
        category[background] = rng.choice(
            BACKGROUND, background.sum(), p=(0.3, 0.25, 0.2, 0.15, 0.1)
        )
        noise = roll > 1 - NOISE_SHARE
        category[noise] = rng.choice(own.ravel(), noise.sum())
        seconds = rng.random(k) * self.days * 86400
        ts = np.datetime64(start, "s") + seconds.astype("timedelta64[s]")
        ids = devices["id"].to_numpy(zero_copy_only=False)[owner]
        id_type = devices["id_type"].to_numpy(zero_copy_only=False)[owner]
        os_name = devices["os"].to_numpy(zero_copy_only=False)[owner]
        is_maid = id_type == "maid"
        id_type = np.where(is_maid, os_name, id_type)
        ids = np.where(is_maid & (os_name == "idfa"), np.char.upper(ids.astype(str)), ids)
        page = rng.integers(1, 500, k)
        url = np.char.add(
            np.char.add(
                np.char.add("https://www.", category.astype(str)), "-site.example/article/"
            ),
            page.astype(str),
        )
        carries_category = rng.random(k) < self.categorised_share
        hem = devices["hem"].to_numpy(zero_copy_only=False)[owner]
        linked = devices["linked_maid"].to_numpy(zero_copy_only=False)[owner]
        sometimes = rng.random(k) < 0.1
        return pa.table(
            {
                "ts": np.datetime_as_string(ts, unit="s").astype(object) + "Z",
                "id": ids,
                "id_type": id_type,
                "url": url,
                "event": rng.choice(EVENT_TYPES, k, p=EVENT_WEIGHTS),
                "category": np.where(carries_category, category, None),
                "keywords": pa.nulls(k, pa.string()),
                "country": devices["country"].to_numpy(zero_copy_only=False)[owner],
                "consent": devices["consent"].to_numpy(zero_copy_only=False)[owner],
                "gpc": np.where(devices["gpc"].to_numpy()[owner], "1", "0"),
                "hem": np.where(sometimes, hem, None),
                "maid": np.where(sometimes, linked, None),
                "cookie": pa.nulls(k, pa.string()),
                "sort_key": seconds,
            },
            schema=_EVENT_SCHEMA,
        )

    def write(
        self,
        out: Path,
        fmt: str = "csv",
        gzipped: bool = False,
        files: int = 1,
        bad_rows: int = 0,
    ) -> dict:
        """Write event logs (time-ordered, split into ``files``), seeds and truth under ``out``."""
        out = Path(out)
        for sub in ("logs", "seeds", "truth"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        con = duckdb.connect()
        self.build(con)
        if bad_rows:
            insert_bad_rows(con, bad_rows)
        total = con.execute("SELECT count(*) FROM world_events").fetchone()[0]
        written = []
        per_file = -(-total // files)
        for index in range(files):
            name = f"events_{index + 1:03d}.{fmt}" + (".gz" if gzipped and fmt != "parquet" else "")
            path = out / "logs" / name
            query = (
                f"SELECT * EXCLUDE (sort_key) FROM world_events ORDER BY sort_key "
                f"LIMIT {per_file} OFFSET {index * per_file}"
            )
            copy_events(con, query, path, fmt)
            written.append(str(path))
        if bad_rows and fmt in ("csv", "tsv"):
            append_malformed_line(Path(written[0]), fmt)
        truth = out / "truth" / "devices.csv"
        con.execute(
            f"""COPY (SELECT id, id_type, persona, propensity, converted, hem, linked_maid
                      FROM world_devices) TO '{truth}' (HEADER)"""
        )
        seeds = write_seed_lists(con, out / "seeds")
        rules = write_category_rules(con, out / "categories.toml")
        con.close()
        return {
            "devices": self.devices,
            "events": total,
            "personas": len(PERSONAS),
            "files": written,
            "truth": str(truth),
            "seeds": seeds,
            "category_rules": str(rules),
        }


def consent_strings(start: datetime) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """TCF strings as CMPs write them, given two weeks before the logs ``start``:
    (granting purposes 1-10, denying purpose 3 or 4, undecodable).

    Two granting CMPs, one writing vendors as a bitfield and one as ranges, so
    both encodings reach the ingest. Times to the day, as CMPs round them.
    """
    given = (start - timedelta(days=14)).replace(hour=0, minute=0, second=0, microsecond=0)
    base = TCString(
        created=given,
        last_updated=given,
        cmp_id=300,
        cmp_version=2,
        vendor_list_version=150,
        tcf_policy_version=4,
        publisher_cc="DE",
        special_feature_optins=frozenset({1}),
        purposes_consent=frozenset(range(1, 11)),
        purposes_li=frozenset({2, 7, 8, 9, 10}),
        vendor_consents=CONSENT_VENDORS,
        vendor_li=frozenset({10, 52}),
    )
    other_cmp = replace(base, cmp_id=7, consent_language="FR", publisher_cc="FR")
    grant = (encode(base, "bitfield"), encode(other_cmp, "range"))
    deny = tuple(
        encode(replace(base, purposes_consent=base.purposes_consent - {purpose}))
        for purpose in (3, 4)
    )
    garbage = (
        grant[0][:20],  # a cookie cut short
        "BOVeoB_OVeoFxC-AHAFRBtAAAAAhGAEAD4AXAA2YCEQ",  # TCF v1
        "undefined",  # a tag template's unset variable
    )
    return grant, deny, garbage


_EVENT_SCHEMA = pa.schema(
    [(name, pa.string()) for name in CANONICAL] + [("sort_key", pa.float64())]
)


def copy_events(con: duckdb.DuckDBPyConnection, query: str, path: Path, fmt: str) -> None:
    """COPY a query to a log file of the given format (gzip from the name)."""
    compression = "gzip" if path.suffix == ".gz" else "none"
    if fmt == "parquet":
        options = "FORMAT parquet"
    elif fmt == "jsonl":
        options = f"FORMAT json, COMPRESSION {compression}"
    else:
        delim = "," if fmt == "csv" else "\\t"
        options = f"FORMAT csv, HEADER, DELIMITER E'{delim}', COMPRESSION {compression}"
    con.execute(f"COPY ({query}) TO '{path}' ({options})")


# One of each class of bad row the ingest must quarantine or drop, as canonical text fields.
BAD_ROWS = (
    {
        "ts": "2026-11-01T10:00:00Z",
        "id": "not-a-maid",
        "id_type": "gaid",
        "url": "https://bad.example/",
    },
    {"ts": "yesterday-ish", "id": "ckbadtimestamp", "id_type": "cookie"},
    {"ts": "2099-01-01T00:00:00Z", "id": "ckfuture", "id_type": "cookie"},
    {"ts": "2026-11-01T10:00:00Z", "id": "ckbadhem", "id_type": "cookie", "hem": "abc123"},
    {
        "ts": "2026-11-01T10:00:00Z",
        "id": "ckoversize",
        "id_type": "cookie",
        "url": "https://x.example/" + "a" * 9000,
    },
    {"ts": "2026-11-01T10:00:00Z", "id": "", "id_type": "cookie"},
    {"ts": "2026-11-01T10:00:00Z", "id": "ckwhat", "id_type": "fax"},
    {"ts": "2026-11-01T10:00:00Z", "id": "00000000-0000-0000-0000-000000000000", "id_type": "idfa"},
)


def insert_bad_rows(con: duckdb.DuckDBPyConnection, count: int) -> None:
    """Scatter ``count`` broken rows (cycling through BAD_ROWS) among the events."""
    for i in range(count):
        row = BAD_ROWS[i % len(BAD_ROWS)]
        columns = ", ".join([*row, "sort_key"])
        marks = ", ".join(["?"] * (len(row) + 1))
        con.execute(
            f"INSERT INTO world_events ({columns}) VALUES ({marks})",
            [*row.values(), (i + 1) * 997.0],
        )


def append_malformed_line(path: Path, fmt: str) -> None:
    """A row with too few fields: the reader, not validation, must catch it."""
    line = ("2026-11-01T10:00:00Z" + ("," if fmt == "csv" else "\t") + "cktoofewfields\n").encode()
    if path.suffix == ".gz":
        with gzip.open(path, "ab") as handle:
            handle.write(line)
    else:
        with path.open("ab") as handle:
            handle.write(line)


def write_category_rules(con: duckdb.DuckDBPyConnection, path: Path) -> Path:
    """The world's site -> category list, as a DMP keeps one for its publishers, so events
    logged without a category still get one (``interests.category_rules``)."""
    domains = con.execute(
        """
        SELECT DISTINCT split_part(split_part(url, '://www.', 2), '/', 1) AS domain,
               split_part(split_part(url, '://www.', 2), '-', 1) AS category
        FROM world_events WHERE url LIKE 'https://www.%-site.example/%' ORDER BY 2
        """
    ).fetchall()
    lines = ["# Synthetic sites of a `dmp generate` world and their IAB content categories.\n"]
    lines += [f'[[rule]]\ndomain = "{d}"\ncategory = "{c}"\n' for d, c in domains]
    path.write_text("\n".join(lines))
    return path


def write_seed_lists(con: duckdb.DuckDBPyConnection, folder: Path) -> dict[str, str]:
    """Seed lists an agency would upload: converters' MAIDs, and their emails."""
    maids = folder / "converters_maid.csv"
    emails = folder / "converters_email.csv"
    con.execute(
        f"""COPY (SELECT lower(id) AS maid FROM world_devices
                  WHERE converted AND id_type = 'maid' ORDER BY hash(id)) TO '{maids}' (HEADER)"""
    )
    con.execute(
        f"""COPY (SELECT email FROM world_devices
                  WHERE converted AND email IS NOT NULL ORDER BY hash(id)) TO '{emails}' (HEADER)"""
    )
    return {"maid": str(maids), "email": str(emails)}
