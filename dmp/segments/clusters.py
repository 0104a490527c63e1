"""Interest clusters: devices grouped by what they read, named in IAB Audience terms.

Features are the decayed interest profiles (sensitive categories left out
unless config allows them), the square root of each score times IDF so that
categories everyone reads count for little, L2-normalised (``weigh``), then
MiniBatchKMeans. k is
configured or chosen by silhouette on a sample. A new run's clusters take
the keys of the last run's by centroid similarity, so a cluster segment that
is synced to a DSP keeps its identity; each cluster becomes a segment of kind
``cluster``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import normalize

from dmp.clock import utcnow
from dmp.config import Config
from dmp.interests.profiles import scores_sql
from dmp.interests.taxonomy import ensure
from dmp.segments.membership import apply_members
from dmp.segments.registry import create_segment, update_definition
from dmp.store import Store

# A new cluster keeps an old key only when their centroids are at least this similar.
MATCH_MIN_COSINE = 0.5
FIT_ROWS = 100_000  # devices the centroids are learnt from
SELECT_ROWS = 10_000  # devices the silhouette of each candidate k is measured on


@dataclass
class Features:
    """Devices x categories, TF-IDF weighted and L2-normalised."""

    devices: pd.DataFrame  # id, id_type (row order of matrix)
    categories: np.ndarray  # category_id per column
    matrix: sparse.csr_matrix


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
               dense_rank() OVER (ORDER BY category_id) - 1 AS col, id, id_type, category_id, score
        FROM ({scores_sql(config)}) WHERE true {sensitive}
        """,
        {"now": now},
    )
    cells = con.execute("SELECT row, col, score FROM cluster_features").fetchnumpy()
    devices = con.execute(
        "SELECT DISTINCT row, id, id_type FROM cluster_features ORDER BY row"
    ).df()[["id", "id_type"]]
    categories = con.execute(
        "SELECT DISTINCT col, category_id FROM cluster_features ORDER BY col"
    ).fetchnumpy()["category_id"]
    con.execute("DROP TABLE cluster_features")
    counts = sparse.csr_matrix(
        (cells["score"], (cells["row"], cells["col"])), shape=(len(devices), len(categories))
    )
    return Features(devices=devices, categories=categories, matrix=weigh(counts))


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


def _sample(matrix: sparse.csr_matrix, size: int, seed: int) -> np.ndarray:
    """A dense float32 random sample of rows: k-means learns its centroids from it."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(matrix.shape[0], size=min(matrix.shape[0], size), replace=False))
    return matrix[rows].toarray().astype(np.float32)


def choose_k(sample: np.ndarray, k_min: int, k_max: int, seed: int) -> tuple[int, dict]:
    """The k with the best silhouette on (a part of) the sample."""
    part = sample[:SELECT_ROWS]
    scores = {}
    for k in range(k_min, min(k_max, len(part) - 1) + 1):
        labels = KMeans(k, random_state=seed, n_init=1).fit_predict(part)
        scores[k] = round(
            float(
                silhouette_score(part, labels, sample_size=min(3000, len(part)), random_state=seed)
            ),
            4,
        )
    return max(scores, key=scores.get), scores


def cluster(store: Store, config: Config, now: datetime | None = None) -> dict:
    """The cluster job: fit, name, match to last run's keys, refresh cluster segments.

    Centroids are learnt on a sample (at most FIT_ROWS devices; plenty for tens
    of clusters) and every device is then assigned to its nearest one.
    """
    now = now or utcnow()
    ensure(store, config)
    features = load_features(store, config, now)
    n, needed = features.matrix.shape[0], 2 * config.get("segments.cluster_k_min")
    if n < needed:
        note = (
            f"too few profiled devices to cluster: {n:,} with non-sensitive interests, "
            f"{needed:,} needed (2 x segments.cluster_k_min); previous clusters kept"
        )
        return {"devices": n, "clusters": [], "note": note}
    seed = config.get("segments.cluster_seed")
    sample = _sample(features.matrix, FIT_ROWS, seed)
    k, silhouettes = config.get("segments.cluster_k"), {}
    if not k:
        k_range = config.get("segments.cluster_k_min"), config.get("segments.cluster_k_max")
        k, silhouettes = choose_k(sample, *k_range, seed)
    model = MiniBatchKMeans(k, random_state=seed, n_init=3, batch_size=4096).fit(sample)
    labels = model.predict(features.matrix.astype(np.float32))
    centroids = normalize(model.cluster_centers_)
    keys = _stable_keys(store, centroids, features.categories)
    named = _names(store, features, labels, k)
    results = _store_clusters(store, config, features, labels, centroids, keys, named, now)
    return {"devices": n, "k": k, "silhouette": silhouettes, "clusters": results}


def _stable_keys(store: Store, centroids: np.ndarray, categories: np.ndarray) -> list[int]:
    """Each new cluster's key: the most similar previous cluster's, or a fresh one."""
    previous = store.con.execute(
        """
        SELECT cluster_key, centroid FROM clusters
        WHERE run_id = (SELECT max(run_id) FROM clusters) ORDER BY cluster_key
        """
    ).fetchall()
    next_key = (store.con.execute("SELECT max(cluster_key) FROM clusters").fetchone()[0] or 0) + 1
    keys = [-1] * len(centroids)
    if previous:
        index = {c: i for i, c in enumerate(categories)}
        old = np.zeros((len(previous), len(categories)))
        for row, (_, centroid) in enumerate(previous):
            for category, weight in json.loads(centroid).items():
                if category in index:
                    old[row, index[category]] = weight
        similarity = normalize(old) @ centroids.T
        for old_row, new_row in zip(*linear_sum_assignment(-similarity), strict=True):
            if similarity[old_row, new_row] >= MATCH_MIN_COSINE:
                keys[new_row] = previous[old_row][0]
    for i, key in enumerate(keys):
        if key == -1:
            keys[i], next_key = next_key, next_key + 1
    return keys


def _names(store: Store, features: Features, labels: np.ndarray, k: int) -> list[dict]:
    """Top over-represented categories per cluster, and an IAB Audience name for it."""
    taxonomy = dict(
        store.con.execute("SELECT id, name FROM taxonomy WHERE taxonomy = 'content'").fetchall()
    )
    audience = {
        name.lower(): path
        for name, path in store.con.execute(
            """
            SELECT name, path FROM taxonomy
            WHERE taxonomy = 'audience' AND path LIKE 'Interest |%' AND NOT sensitive
            ORDER BY depth DESC
            """
        ).fetchall()
    }
    overall = np.asarray(features.matrix.mean(axis=0)).ravel() + 1e-9
    named = []
    for cluster_index in range(k):
        members = features.matrix[labels == cluster_index]
        lift = np.asarray(members.mean(axis=0)).ravel() / overall
        top = [features.categories[i] for i in np.argsort(-lift)[:3]]
        names = [taxonomy.get(c, c) for c in top]
        label = next((audience[n.lower()] for n in names if n.lower() in audience), None)
        named.append(
            {
                "label": label or "Interest | " + " / ".join(names[:2]),
                "top_categories": [{"id": c, "name": n} for c, n in zip(top, names, strict=True)],
            }
        )
    return named


def _store_clusters(store, config, features, labels, centroids, keys, named, now) -> list[dict]:
    """One transaction: the run's clusters, their segments and memberships."""
    con = store.con
    results = []
    with store.transaction():
        run_id = (con.execute("SELECT max(run_id) FROM clusters").fetchone()[0] or 0) + 1
        for index, key in enumerate(keys):
            members = features.devices[labels == index]
            segment_id = _cluster_segment(con, key, named[index]["label"], now)
            centroid = {
                str(c): round(float(w), 6)
                for c, w in zip(features.categories, centroids[index], strict=True)
                if w > 1e-4
            }
            con.execute(
                "INSERT INTO clusters VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, key, named[index]["label"], len(members),
                 json.dumps(named[index]["top_categories"]), json.dumps(centroid),
                 segment_id, now],
            )  # fmt: skip
            con.register("cluster_members", members)
            result = apply_members(
                con, segment_id, "cluster_members", now, config.get("segments.cluster_ttl_days")
            )
            con.unregister("cluster_members")
            results.append({"key": key, "label": named[index]["label"], **result})
    return results


def _cluster_segment(con, key: int, label: str, now: datetime) -> int:
    """The segment of cluster ``key``, created on its first run; its label may change."""
    row = con.execute(
        "SELECT segment_id FROM segments WHERE kind = 'cluster' "
        "AND json_extract(definition, '$.cluster_key')::INTEGER = ?",
        [key],
    ).fetchone()
    definition = {"cluster_key": key, "label": label}
    if row:
        update_definition(con, row[0], definition, description=label, now=now)
        return row[0]
    return create_segment(
        con, f"Cluster {key:02d}: {label}", "cluster", definition, description=label, now=now
    )
