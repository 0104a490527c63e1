"""A matrix of synthetic worlds for the cluster quality bench, independent of dmp.generate.

dmp/generate.py plants 13 hand-picked personas of five categories each, almost
disjoint, mixes in a fixed background of five popular categories and 3% noise
over persona categories, spreads every device's events uniformly over the
same window that ends "now", and logs CSV. This generator assumes otherwise,
on purpose, so clustering is measured on worlds its author did not tune for:

- personas are drawn from the IAB Content Taxonomy 3.1 tree itself (a home
  branch plus a few cross-interests, 4-10 categories of Zipf-like weight),
  and ``overlap`` makes each persona borrow that share of its categories
  from other personas (two sports personas sharing Sports news, say);
- off-persona noise (``noise``, 30% by default) is drawn from one global,
  Zipf-skewed popularity over the whole taxonomy, sensitive branches
  included (dmp must drop those), so a few "news" categories are everywhere;
- each device has its own last-active moment spread over ``recency_days``
  before now and a short active span before it, so on old worlds most decayed
  scores are far below 1;
- events per device follow a Pareto law (``pareto_shape``: lower = heavier
  tail, many devices with two or three events);
- cookies (random hex) and MAIDs (upper-case IDFAs and lower-case GAIDs) in
  ``maid_share``;
- logs are JSON Lines; some events carry an explicit ``category`` (an ID), the
  rest are categorised by their site through a rules file.

``write`` produces ``events.jsonl``, ``categories.toml`` (site rules) and
``truth.csv`` (id, id_type as dmp stores them, persona).
"""

from __future__ import annotations

import csv
import tomllib
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
TAXONOMY = ROOT / "dmp" / "data" / "iab" / "content_taxonomy_3.1.tsv"
DEFAULTS = ROOT / "config" / "dmp.toml"
NOW = datetime(2026, 11, 20, 12, 0, 0)  # noqa: DTZ001 (UTC, as logs carry it)
EXPLICIT_CATEGORY_SHARE = 0.4
MAX_EVENTS_PER_DEVICE = 3000  # well under the bot filter's daily limit
CHUNK = 1_000_000  # events generated at a time (bounded memory at 10M events)
PERSONA_SLOTS = 10  # most categories a persona has


@dataclass(frozen=True)
class WorldSpec:
    """One world of the matrix; every field is an axis a bench may vary."""

    name: str = "base"
    personas: int = 20
    devices: int = 20_000
    events_per_device: float = 10.0
    recency_days: float = 30.0  # last activity spread uniformly over this many days
    active_days: float = 7.0  # a device's events fall in at most this span before it
    pareto_shape: float = 1.5  # events per device ~ Pareto(shape); lower = more skewed
    overlap: float = 0.0  # share of a persona's categories borrowed from others
    noise: float = 0.3  # share of events off-persona (global popularity)
    maid_share: float = 0.5
    seed: int = 7

    def scaled(self, devices: int) -> WorldSpec:
        """The same world at another size (events per device kept)."""
        return replace(self, devices=devices)


# The matrix: a base world, each axis pushed to its hard end alone, and all at once.
MATRIX = (
    WorldSpec("fresh-1d", recency_days=1, active_days=1),
    WorldSpec("old-60d", recency_days=60, active_days=14),
    WorldSpec("pareto-1.2", pareto_shape=1.2),
    WorldSpec("overlap-50%", overlap=0.5),
    WorldSpec("cookies-only", maid_share=0.0),
    WorldSpec("maid-90%", maid_share=0.9),
    WorldSpec("personas-5", personas=5),
    WorldSpec("personas-40", personas=40, devices=40_000),
    WorldSpec(
        "hard-all",
        personas=40,
        devices=40_000,
        recency_days=60,
        active_days=14,
        pareto_shape=1.2,
        overlap=0.5,
    ),
)


def taxonomy() -> tuple[list[str], dict[str, str]]:
    """(category IDs in file order, parent of each) from the shipped IAB TSV."""
    ids, parent = [], {}
    with TAXONOMY.open(encoding="utf-8") as handle:
        for record in list(csv.reader(handle, delimiter="\t"))[2:]:
            if record and record[0].strip():
                ids.append(record[0].strip())
                parent[record[0].strip()] = record[1].strip() or None
    return ids, parent


def usable(ids: list[str], parent: dict[str, str]) -> list[str]:
    """Categories outside the sensitive branches of the shipped config."""
    sensitive = set(tomllib.loads(DEFAULTS.read_text())["interests"]["sensitive_content"])

    def is_sensitive(node: str | None) -> bool:
        while node:
            if node in sensitive:
                return True
            node = parent.get(node)
        return False

    return [c for c in ids if not is_sensitive(c)]


def plant_personas(
    spec: WorldSpec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(categories P x SLOTS, weights P x SLOTS with 0 for unused slots, all category IDs)."""
    ids, parent = taxonomy()
    allowed = usable(ids, parent)
    roots = sorted({_root(c, parent) for c in allowed})
    branch = {r: [c for c in allowed if _root(c, parent) == r] for r in roots}
    roots = [r for r in roots if len(branch[r]) >= 4]
    cats = np.empty((spec.personas, PERSONA_SLOTS), dtype=object)
    weights = np.zeros((spec.personas, PERSONA_SLOTS))
    for p in range(spec.personas):
        size = int(rng.integers(4, PERSONA_SLOTS + 1))
        home = branch[roots[rng.integers(len(roots))]]
        own = min(size - 1, len(home))
        picked = list(rng.choice(home, own, replace=False))
        while len(picked) < size:
            extra = allowed[rng.integers(len(allowed))]
            if extra not in picked:
                picked.append(extra)
        cats[p, :size] = picked
        cats[p, size:] = picked[0]
        weights[p, :size] = 1.0 / np.arange(1, size + 1) ** 0.8
    _share(cats, weights, spec.overlap, rng)
    return cats, weights / weights.sum(axis=1, keepdims=True), ids


def _share(cats: np.ndarray, weights: np.ndarray, overlap: float, rng: np.random.Generator) -> None:
    """Each persona takes ``overlap`` of its slots (by weight rank) from other personas."""
    count = len(cats)
    if overlap <= 0 or count < 2:
        return
    originals = cats.copy()
    for p in range(count):
        size = int((weights[p] > 0).sum())
        borrow = int(round(overlap * size))
        slots = rng.choice(np.arange(size), borrow, replace=False)
        for slot in slots:
            donor = (p + 1 + int(rng.integers(count - 1))) % count
            donor_size = int((weights[donor] > 0).sum())
            cats[p, slot] = originals[donor, rng.integers(donor_size)]


def _root(category: str, parent: dict[str, str]) -> str:
    while parent.get(category):
        category = parent[category]
    return category


def _event_counts(spec: WorldSpec, rng: np.random.Generator) -> np.ndarray:
    """Pareto events per device with mean ``events_per_device``, at least one."""
    scale = spec.events_per_device * (spec.pareto_shape - 1) / spec.pareto_shape
    counts = np.rint(scale * (1 + rng.pareto(spec.pareto_shape, spec.devices)))
    return np.clip(counts, 1, MAX_EVENTS_PER_DEVICE).astype(np.int64)


def _device_ids(spec: WorldSpec, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """(id as logged, id_type as logged, id as dmp stores it, id_type as dmp stores it)."""
    n = spec.devices
    raw = rng.bytes(16 * n)
    hexes = [raw[16 * i : 16 * (i + 1)].hex() for i in range(n)]
    is_maid = rng.random(n) < spec.maid_share
    is_idfa = is_maid & (rng.random(n) < 0.5)
    uuids = np.array(
        [f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:]}" for h in hexes], dtype=object
    )
    cookies = np.array([f"c_{h[:20]}" for h in hexes], dtype=object)
    stored = np.where(is_maid, uuids, cookies)
    logged = np.where(is_idfa, np.char.upper(stored.astype(str)).astype(object), stored)
    logged_type = np.where(is_maid, np.where(is_idfa, "idfa", "gaid"), "cookie")
    return logged, logged_type, stored, np.where(is_maid, "maid", "cookie")


def build(spec: WorldSpec, con: duckdb.DuckDBPyConnection, now: datetime = NOW) -> None:
    """Tables ``world_events`` (canonical log columns, text) and ``world_truth``."""
    rng = np.random.default_rng(spec.seed)
    cats, weights, everything = plant_personas(spec, rng)
    persona = rng.integers(0, spec.personas, spec.devices)
    # Each device's own taste within its persona: persona weights times a gamma draw.
    taste = weights[persona] * rng.gamma(2.0, 1.0, (spec.devices, PERSONA_SLOTS))
    taste = np.cumsum(taste / taste.sum(axis=1, keepdims=True), axis=1)
    popularity = 1.0 / np.arange(1, len(everything) + 1) ** 1.1
    popular = rng.permutation(np.array(everything, dtype=object))
    last_active = rng.random(spec.devices) * spec.recency_days * 86400
    span = rng.random(spec.devices) * spec.active_days * 86400
    logged, logged_type, stored, stored_type = _device_ids(spec, rng)
    owner = np.repeat(np.arange(spec.devices), _event_counts(spec, rng))
    rng.shuffle(owner)
    con.execute(
        "CREATE OR REPLACE TABLE world_events (ts VARCHAR, id VARCHAR, id_type VARCHAR, "
        "url VARCHAR, event VARCHAR, category VARCHAR, country VARCHAR)"
    )
    loglik, ordered = _log_likelihood(spec, cats, weights, popular, popularity)
    evidence = np.zeros((spec.devices, spec.personas))
    for lo in range(0, len(owner), CHUNK):
        part = owner[lo : lo + CHUNK]
        k = len(part)
        slot = (rng.random(k)[:, None] > taste[part]).sum(axis=1).clip(0, PERSONA_SLOTS - 1)
        category = cats[persona[part], slot]
        off = rng.random(k) < spec.noise
        category[off] = rng.choice(popular, off.sum(), p=popularity / popularity.sum())
        ago = last_active[part] + rng.random(k) * span[part]
        ts = np.datetime64(now, "s") - ago.astype("timedelta64[s]")
        site = rng.integers(0, 3, k)
        explicit = rng.random(k) < EXPLICIT_CATEGORY_SHARE
        chunk = pa.table(
            {
                "ts": np.datetime_as_string(ts, unit="s").astype(object) + "Z",
                "id": logged[part],
                "id_type": logged_type[part],
                "url": [
                    f"https://{_site(c)}-{s}.pub.example/a/{i}"
                    for c, s, i in zip(category, site, rng.integers(0, 10_000, k), strict=True)
                ],
                "event": np.where(rng.random(k) < 0.9, "pageview", "click"),
                "category": np.where(explicit, category, None),
                "country": np.where(rng.random(k) < 0.7, "US", "BR"),
            }
        )
        np.add.at(evidence, part, loglik[np.searchsorted(ordered, category)])
        con.register("chunk_arrow", chunk)
        con.execute("INSERT INTO world_events SELECT * FROM chunk_arrow")
        con.unregister("chunk_arrow")
    oracle = evidence.argmax(axis=1)
    truth = pa.table({"id": stored, "id_type": stored_type, "persona": persona, "oracle": oracle})
    con.register("truth_arrow", truth)
    con.execute("CREATE OR REPLACE TABLE world_truth AS SELECT * FROM truth_arrow")
    con.unregister("truth_arrow")


def _log_likelihood(
    spec: WorldSpec,
    cats: np.ndarray,
    weights: np.ndarray,
    popular: np.ndarray,
    popularity: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """log P(category | persona) as planted (sorted categories x personas) and the sorted
    categories: the Bayes classifier that knows the planted model, whose NMI is about
    the best any method can reach on the world (the bench's "ceiling")."""
    noise = popularity / popularity.sum()
    prob = np.outer(noise * spec.noise, np.ones(spec.personas))
    index = {c: i for i, c in enumerate(popular)}
    for p in range(spec.personas):
        for c, w in zip(cats[p], weights[p], strict=True):
            prob[index[c], p] += (1 - spec.noise) * w
    order = np.argsort(popular)
    return np.log(prob[order]), popular[order]


def _site(category: str) -> str:
    """A publisher name per category (IDs can have capitals; hosts do not)."""
    return "s" + "".join(f"{ord(ch):02x}" for ch in category)


def write(spec: WorldSpec, folder: Path, now: datetime = NOW) -> dict:
    """The world's logs, site rules and truth under ``folder``; a summary."""
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    build(spec, con, now)
    events, truth, rules = folder / "events.jsonl", folder / "truth.csv", folder / "categories.toml"
    con.execute(f"COPY (SELECT * FROM world_events ORDER BY ts) TO '{events}' (FORMAT json)")
    con.execute(f"COPY world_truth TO '{truth}' (HEADER)")
    sites = con.execute(
        """
        SELECT DISTINCT split_part(split_part(url, '://', 2), '/', 1) AS domain
        FROM world_events ORDER BY 1
        """
    ).fetchall()
    lines = [f"# Sites of bench world {spec.name!r} and their IAB content categories.\n"]
    for (domain,) in sites:
        category = bytes.fromhex(domain[1:].rsplit("-", 1)[0]).decode()
        lines.append(f'[[rule]]\ndomain = "{domain}"\ncategory = "{category}"\n')
    rules.write_text("\n".join(lines))
    total = con.execute("SELECT count(*) FROM world_events").fetchone()[0]
    con.close()
    return {**asdict(spec), "event_rows": total, "events": events, "truth": truth, "rules": rules}
