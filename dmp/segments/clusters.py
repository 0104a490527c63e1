"""Interest clusters: devices grouped by what they read, named in IAB Audience terms.

Features are the decayed interest profiles (sensitive categories left out
unless config allows them), the square root of each score times IDF so that
categories everyone reads count for little, L2-normalised (``weigh``). The
clusters are a k-means fixed point reached by Lloyd iterations on a seeded
sample of the informative devices (``informative``: those with enough events
to show their interests), in one thread, and every device then goes to its
nearest centroid: the same profiles and clock give the same k, keys, names and
memberships, byte for byte.

- k is chosen (``choose_k``: the best silhouette on informative devices over a
  grid between k_min and k_max, or set by ``segments.cluster_k``) when clusters
  are first built, when an operator asks
  (``rechoose_k``, ``dmp run cluster --rechoose-k``) or when those settings
  change; it is stored and kept.
- A later run warm-starts from the previous run's centroids, so clusters move
  only as far as the data moved.
- Keys: the new clusters are matched one-to-one to the previous run's by the
  Hungarian assignment on centroid cosine similarity. A pair keeps the old key
  only if their similarity is at least ``MATCH_MIN_COSINE`` AND both centroids
  are about the same topic (``same_topic``: the same heaviest category, or a
  near-tie of two); otherwise the new cluster is born with a new key and the old
  one retires. A Sports cluster that became a
  Nutrition cluster never keeps its key.
- Names are recomputed from each centroid every run (``name_clusters``) and are
  unique among the run's clusters.

Refusals (too few devices, k out of range, nothing but sensitive interests)
change nothing; storing a run as segments (guard, retirement, report) is
``dmp.segments.cluster_segments``.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import normalize
from threadpoolctl import threadpool_limits

from dmp.clock import utcnow
from dmp.config import Config
from dmp.errors import DmpError
from dmp.interests.profiles import scores_sql
from dmp.interests.taxonomy import ensure
from dmp.segments.cluster_segments import ClusterRun, refuse, store_run
from dmp.store import Store

# A new cluster keeps an old key only when their centroids are at least this similar
# (cosine) and share their top category.
MATCH_MIN_COSINE = 0.5
# Two centroids are about the same topic when each one's heaviest category weighs at
# least this share of the other's heaviest: a near-tie between two top categories
# (personas that weigh theirs almost equally) is no change of topic.
TOPIC_TIE = 0.8
FIT_ROWS = 100_000  # devices the centroids are learnt from
# Devices with fewer profiled events than this show too little of their interests to
# learn centroids from (they are still assigned); when fewer than FIT_MIN_DEVICES have
# that many, the FIT_MIN_DEVICES most active devices are used instead.
FIT_MIN_EVENTS = 8
FIT_MIN_DEVICES = 3_000
SELECT_ROWS = 10_000  # devices the silhouette of each candidate k is measured on
SELECT_ROWS_PER_K = 50  # candidates for k stop at one cluster per this many of those devices
K_GRID_STEP = 1.1  # candidates for k: steps of 10%, at least 1 (every k to 16)
NAME_MIN_WEIGHT = 0.5  # a category names a cluster if its weight is this share of the top's
NAME_NODES, NAME_MAX_NODES = 2, 4  # nodes in a name; more only to tell two clusters apart
_K_SETTINGS = ("cluster_k", "cluster_k_min", "cluster_k_max")


class CannotCluster(DmpError):
    """Today's profiles or settings cannot give clusters; the previous ones stay."""


@dataclass
class Features:
    """Devices x categories, TF-IDF weighted and L2-normalised."""

    devices: pd.DataFrame  # id, id_type (row order of matrix)
    categories: np.ndarray  # category_id per column
    matrix: sparse.csr_matrix
    events: np.ndarray  # profiled events per device (row order): how much it showed of itself


def load_features(store: Store, config: Config, now: datetime) -> Features:
    """Pivot profile scores into a sparse matrix in one fetch."""
    sensitive = (
        ""
        if config.get("interests.allow_sensitive")
        else "AND category_id NOT IN "
        "(SELECT id FROM taxonomy WHERE taxonomy = 'content' AND sensitive)"
    )
    con = store.con
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE cluster_features AS
        SELECT dense_rank() OVER (ORDER BY id_type, id) - 1 AS row,
               dense_rank() OVER (ORDER BY category_id) - 1 AS col,
               id, id_type, category_id, score, events
        FROM ({scores_sql(config)}) WHERE true {sensitive}
        """,
        {"now": now},
    )
    cells = con.execute("SELECT row, col, score, events FROM cluster_features").fetchnumpy()
    devices = con.execute(
        "SELECT DISTINCT row, id, id_type FROM cluster_features ORDER BY row"
    ).df()[["id", "id_type"]]
    categories = con.execute(
        "SELECT DISTINCT col, category_id FROM cluster_features ORDER BY col"
    ).fetchnumpy()["category_id"]
    con.execute("DROP TABLE cluster_features")
    shape = (len(devices), len(categories))
    events = np.bincount(cells["row"], weights=cells["events"], minlength=len(devices))
    if not len(devices) or not len(categories):  # nothing to weight: cluster() says why
        return Features(devices, categories, sparse.csr_matrix(shape), events)
    scores = sparse.csr_matrix((cells["score"], (cells["row"], cells["col"])), shape=shape)
    return Features(devices, categories, weigh(scores), events)


def weigh(scores: sparse.csr_matrix) -> sparse.csr_matrix:
    """Decayed scores -> clustering features: sqrt(score) x IDF, rows L2-normalised.

    A decayed score has no fixed scale: it shrinks with the age of a device's
    activity, so 1 + ln(score) (sublinear tf) went negative below 1/e and made
    old devices' features noise. A power of the score is never negative and,
    once the row is normalised, does not depend on how old or how busy the
    device is (sqrt(c * s) = sqrt(c) * sqrt(s)); the square root still damps a
    device's top category as sublinear tf did. Measured on the world matrix
    of bench/cluster_quality.py (README). An empty matrix stays empty.
    """
    if scores.shape[0] == 0:
        return scores
    return TfidfTransformer(norm="l2").fit_transform(scores.sqrt())


def informative(events: np.ndarray, at_least: int = FIT_MIN_DEVICES) -> np.ndarray:
    """The rows centroids and k are learnt from: devices with at least FIT_MIN_EVENTS
    profiled events, or the ``at_least`` most active when fewer have that many.

    A device seen two or three times sits at a corner of the feature space (one or two
    categories, often off its persona) and pulls centroids about; learning them from
    devices that showed more of their interests, then assigning every device, recovers
    planted personas far better on sparse worlds (README, cluster quality bench)."""
    if not len(events):
        return np.arange(0)
    floor = np.sort(events)[::-1][min(len(events), at_least) - 1]
    return np.flatnonzero(events >= min(FIT_MIN_EVENTS, floor))


def _sample(matrix: sparse.csr_matrix, rows: np.ndarray, size: int, seed: int) -> sparse.csr_matrix:
    """A seeded random sample of the given rows, in row order: k-means learns from it."""
    rng = np.random.default_rng(seed)
    return matrix[np.sort(rng.choice(rows, size=min(len(rows), size), replace=False))]


def k_grid(k_min: int, k_max: int) -> list[int]:
    """Candidates for k: every k up to 16, then about 10% apart, k_max included. A wide
    range costs a bounded number of fits, and a near miss costs little NMI."""
    grid, k = [], k_min
    while k < k_max:
        grid.append(k)
        k = max(k + 1, round(k * K_GRID_STEP))
    return [*grid, k_max]


def choose_k(sample: sparse.csr_matrix, k_min: int, k_max: int, seed: int) -> tuple[int, dict]:
    """The k with the best silhouette on (a part of) the sample of informative devices,
    among ``k_grid`` candidates up to one cluster per SELECT_ROWS_PER_K devices of it.

    On all devices, the silhouette of sparse data keeps growing with k (pareto-1.2
    chose 50 for 20 personas); on devices with enough events it peaks near the planted
    number of personas, for 5 as for 40."""
    part = sample[:SELECT_ROWS]
    top = max(k_min, min(k_max, part.shape[0] // SELECT_ROWS_PER_K, part.shape[0] - 1))
    scores = {}
    for k in k_grid(k_min, top):
        labels = KMeans(k, random_state=seed, n_init=1).fit_predict(part)
        scores[k] = round(
            float(
                silhouette_score(
                    part, labels, sample_size=min(3000, part.shape[0]), random_state=seed
                )
            ),
            4,
        )
    return max(scores, key=scores.get), scores


def cluster(
    store: Store, config: Config, now: datetime | None = None, rechoose_k: bool = False
) -> dict:
    """The cluster job: fit (warm-started), match keys, name, and store the run as cluster
    segments; returns the run's quality report. Bad input is refused with the reason in
    the report (``status: kept``) and changes nothing."""
    now = now or utcnow()
    ensure(store, config)
    features = load_features(store, config, now)
    try:
        run = _fit_run(store, config, features, rechoose_k)
    except CannotCluster as exc:
        return refuse(store, str(exc), features.matrix.shape[0], now)
    return store_run(store, config, run, now)


def _fit_run(store: Store, config: Config, features: Features, rechoose_k: bool) -> ClusterRun:
    """Everything about this run's clusters that does not touch the database."""
    _check_profiles(store, config, features)
    settings = {key: config.get(f"segments.{key}") for key in _K_SETTINGS}
    _check_k_settings(settings)
    seed = config.get("segments.cluster_seed")
    # Enough rows for any k this run can have: chosen (at most one per SELECT_ROWS_PER_K
    # rows of the sample), configured, or kept (either of those, as the settings are).
    rows = informative(features.events, max(FIT_MIN_DEVICES, 2 * settings["cluster_k"]))
    sample = _sample(features.matrix, rows, FIT_ROWS, seed)
    previous = _previous_clusters(store)
    with threadpool_limits(1):  # one thread: sums in one order, the same result every run
        k, how, candidates = _decide_k(store, settings, sample, rechoose_k, seed)
        _check_devices(features.matrix.shape[0], k)
        warm = _warm_start(previous, features.categories) if how == "kept" else None
        if warm is not None and len(warm) != k:
            warm = None
        centroids = _fit(sample, k, warm, seed)
        labels = assign(features.matrix, centroids)
        silhouette = _silhouette(sample, centroids, seed)
    keys = match_keys(store, previous, centroids, features.categories)
    named = name_clusters(store, features, labels, centroids, keys)
    return ClusterRun(
        devices=features.devices, categories=features.categories, labels=labels,
        centroids=centroids, keys=keys, named=named, k=k, k_how=how, k_settings=settings,
        k_candidates=candidates, warm_start=warm is not None, silhouette=silhouette,
    )  # fmt: skip


def _check_profiles(store: Store, config: Config, features: Features) -> None:
    """No devices to cluster: say whether there are no profiles or only sensitive ones."""
    if features.matrix.shape[0]:
        return
    profiled = store.con.execute("SELECT count(*) FROM profiles").fetchone()[0]
    if profiled and not config.get("interests.allow_sensitive"):
        raise CannotCluster(
            "every profiled interest is in a sensitive category, which clusters never use "
            "(interests.allow_sensitive is off): nothing to cluster"
        )
    raise CannotCluster("no device has an interest profile yet: run the profile job first")


def _check_k_settings(settings: dict) -> None:
    """A k out of range is refused before any work, naming the setting."""
    k, k_min, k_max = (settings[key] for key in _K_SETTINGS)
    if k and not 2 <= k <= FIT_ROWS // 2:
        raise CannotCluster(
            f"segments.cluster_k = {k}: k must be between 2 and {FIT_ROWS // 2:,} (or 0 to choose)"
        )
    if not k and not 2 <= k_min <= k_max:
        raise CannotCluster(
            f"segments.cluster_k_min = {k_min}, cluster_k_max = {k_max}: k is chosen between "
            "them, so they need 2 <= cluster_k_min <= cluster_k_max"
        )


def _check_devices(devices: int, k: int) -> None:
    if devices < 2 * k:
        raise CannotCluster(
            f"too few profiled devices to cluster: {devices:,} devices for k = {k} "
            f"(at least {2 * k:,} needed)"
        )


def _decide_k(
    store: Store, settings: dict, sample: sparse.csr_matrix, rechoose: bool, seed: int
) -> tuple[int, str, dict | None]:
    """The stored k unless asked to choose again or the k settings changed since (then
    the configured k, or the best silhouette): k, how it came, candidates' silhouettes."""
    stored = store.con.execute("SELECT k, settings FROM cluster_k").fetchone()
    if stored and not rechoose and json.loads(stored[1]) == settings:
        return stored[0], "kept", None
    if settings["cluster_k"]:
        return settings["cluster_k"], "configured", None
    _check_devices(sample.shape[0], settings["cluster_k_min"])
    k, candidates = choose_k(sample, settings["cluster_k_min"], settings["cluster_k_max"], seed)
    return k, "chosen", candidates


def _fit(sample: sparse.csr_matrix, k: int, warm: np.ndarray | None, seed: int) -> np.ndarray:
    """Centroids at a fixed point of Lloyd's iterations on the sample, from the previous
    run's centroids or (first build, new k) from the best of ten k-means++ starts
    (k-means has local optima a few hundredths of NMI apart; the lowest inertia of
    ten was as close or closer to the planted personas than three starts or
    mini-batch ones on every world tried, for seconds at 100,000 rows). Run again on
    the same sample from its own result, this returns that result unchanged."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # duplicate points: fewer distinct
        if warm is None:
            warm = KMeans(k, random_state=seed, n_init=10).fit(sample).cluster_centers_
        lloyd = KMeans(k, init=warm, n_init=1, max_iter=1000, tol=0.0, random_state=seed)
        return lloyd.fit(sample).cluster_centers_


def assign(matrix: sparse.csr_matrix, centroids: np.ndarray) -> np.ndarray:
    """Each row's nearest centroid (Euclidean; the first on a tie)."""
    closeness = matrix @ centroids.T - 0.5 * (centroids**2).sum(axis=1)
    return np.asarray(closeness.argmax(axis=1)).ravel()


def _silhouette(sample: sparse.csr_matrix, centroids: np.ndarray, seed: int) -> float | None:
    """Silhouette of the clustering on (a part of) the sample, for the quality report."""
    part = sample[:SELECT_ROWS]
    labels = assign(part, centroids)
    if len(np.unique(labels)) < 2:
        return None
    size = min(3000, part.shape[0])
    return round(float(silhouette_score(part, labels, sample_size=size, random_state=seed)), 4)


# -- identity: keys from the previous run ---------------------------------------------


@dataclass
class Previous:
    """The clusters of the last applied run, by key."""

    keys: list[int]
    centroids: list[dict]  # category_id -> weight


def _previous_clusters(store: Store) -> Previous:
    rows = store.con.execute(
        """
        SELECT cluster_key, centroid FROM clusters
        WHERE run_id = (SELECT max(run_id) FROM clusters) ORDER BY cluster_key
        """
    ).fetchall()
    return Previous([key for key, _ in rows], [json.loads(c) for _, c in rows])


def _dense(previous: Previous, categories: np.ndarray) -> np.ndarray:
    """The previous centroids as rows over today's categories."""
    index = {c: i for i, c in enumerate(categories)}
    old = np.zeros((len(previous.keys), len(categories)))
    for row, centroid in enumerate(previous.centroids):
        for category, weight in centroid.items():
            if category in index:
                old[row, index[category]] = weight
    return old


def _warm_start(previous: Previous, categories: np.ndarray) -> np.ndarray | None:
    return _dense(previous, categories) if previous.keys else None


def top_category(centroid: dict) -> str | None:
    """A centroid's heaviest category (the smallest ID on a tie): what it is about."""
    return max(sorted(centroid), key=centroid.get) if centroid else None


def same_topic(old: dict, new: dict) -> bool:
    """Whether two centroids (category -> weight) are about the same thing: the same
    heaviest category, or each one's heaviest within ``TOPIC_TIE`` of the other's top
    weight in the other. Sports that became Nutrition is not: Sports weighs little in it."""
    old_top, new_top = top_category(old), top_category(new)
    if old_top is None or new_top is None or old_top == new_top:
        return old_top == new_top
    return (
        new.get(old_top, 0.0) >= TOPIC_TIE * new[new_top]
        and old.get(new_top, 0.0) >= TOPIC_TIE * old[old_top]
    )


def match_keys(
    store: Store, previous: Previous, centroids: np.ndarray, categories: np.ndarray
) -> list[int]:
    """Each new cluster's key: its Hungarian partner's among the previous clusters if
    similar enough and about the same top category, else a key never used before."""
    keys = [-1] * len(centroids)
    if previous.keys:
        old = _dense(previous, categories)
        norms = np.array(
            [np.sqrt(sum(w * w for w in c.values())) or 1.0 for c in previous.centroids]
        )
        similarity = (old / norms[:, None]) @ normalize(centroids).T
        new = [_as_dict(c, categories) for c in centroids]
        for old_row, new_row in zip(*linear_sum_assignment(-similarity), strict=True):
            alike = similarity[old_row, new_row] >= MATCH_MIN_COSINE
            if alike and same_topic(previous.centroids[old_row], new[new_row]):
                keys[new_row] = previous.keys[old_row]
    next_key = (store.con.execute("SELECT max(cluster_key) FROM clusters").fetchone()[0] or 0) + 1
    for i, key in enumerate(keys):
        if key == -1:
            keys[i], next_key = next_key, next_key + 1
    return keys


def _as_dict(centroid: np.ndarray, categories: np.ndarray) -> dict:
    """A centroid as stored: category -> weight, zero weights left out, full precision."""
    return {str(c): float(w) for c, w in zip(categories, centroid, strict=True) if w != 0}


# -- names ----------------------------------------------------------------------------


def name_clusters(
    store: Store,
    features: Features,
    labels: np.ndarray,
    centroids: np.ndarray,
    keys: list[int],
) -> list[dict]:
    """Each cluster's name and top categories, from its centroid: its heaviest content
    categories (those within NAME_MIN_WEIGHT of the top, at most NAME_NODES), each as
    its IAB Audience node where one has its name, with the share of members whose
    profile has it. Two clusters never share a name: colliding names take further
    nodes, and a collision left after NAME_MAX_NODES is numbered in key order."""
    content, audience = _taxonomy_names(store)
    k = len(centroids)
    one_hot = sparse.csr_matrix(
        (np.ones(len(labels)), (labels, np.arange(len(labels)))), (k, len(labels))
    )
    having = (one_hot @ (features.matrix > 0).astype(np.float64)).toarray()
    sizes = np.maximum(np.bincount(labels, minlength=k), 1)
    tops, nodes, widths = [], [], []
    for i in range(k):
        order = np.argsort(-centroids[i], kind="stable")[: NAME_MAX_NODES * 2]
        top = []
        for col in order:
            if centroids[i, col] <= 0:
                break
            name = content.get(features.categories[col], str(features.categories[col]))
            top.append({
                "id": str(features.categories[col]), "name": name,
                "node": audience.get(name.lower(), name),
                "weight": round(float(centroids[i, col]), 4),
                "share": round(float(having[i, col] / sizes[i]), 4),
            })  # fmt: skip
        names = list(dict.fromkeys(t["node"] for t in top))[:NAME_MAX_NODES] or ["No interests"]
        heavy = sum(t["weight"] >= NAME_MIN_WEIGHT * top[0]["weight"] for t in top) if top else 1
        tops.append(top[:NAME_MAX_NODES])
        nodes.append(names)
        widths.append(max(1, min(NAME_NODES, heavy, len(names))))
    labels_ = _unique_labels(nodes, widths, keys)
    return [
        {"label": label, "top_categories": top} for label, top in zip(labels_, tops, strict=True)
    ]


def _unique_labels(nodes: list[list[str]], widths: list[int], keys: list[int]) -> list[str]:
    """Names from the first ``widths`` nodes, widened until no two are equal."""
    while True:
        labels = [" / ".join(n[:w]) for n, w in zip(nodes, widths, strict=True)]
        groups = defaultdict(list)
        for i, label in enumerate(labels):
            groups[label].append(i)
        clashes = [group for group in groups.values() if len(group) > 1]
        grown = False
        for group in clashes:
            for i in group:
                if widths[i] < len(nodes[i]):
                    widths[i], grown = widths[i] + 1, True
        if not grown:
            break
    for group in clashes:
        for rank, i in enumerate(sorted(group, key=keys.__getitem__)[1:], start=2):
            labels[i] = f"{labels[i]} ({rank})"
    return labels


def _taxonomy_names(store: Store) -> tuple[dict, dict]:
    """Content category ID -> name; lower-case name -> IAB Audience interest node name."""
    content = dict(
        store.con.execute("SELECT id, name FROM taxonomy WHERE taxonomy = 'content'").fetchall()
    )
    audience = {
        name.lower(): name
        for (name,) in store.con.execute(
            """
            SELECT name FROM taxonomy
            WHERE taxonomy = 'audience' AND path LIKE 'Interest |%' AND NOT sensitive
            ORDER BY depth DESC, id DESC
            """
        ).fetchall()
    }
    return content, audience
