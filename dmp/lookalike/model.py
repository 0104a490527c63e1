"""The lookalike model: who, among the eligible devices, looks like the seeds.

Positive-unlabelled learning on interest profiles. Features are the decayed
category scores, ``log1p``-damped, weighted by inverse document frequency (a
category everyone reads says little) and scaled to unit length. Two scorers
are blended after standardising each on the unlabelled sample:

- a logistic regression of seeds against a random sample of non-seed devices
  (the unlabelled class; some of them are unknown positives, which only
  shrinks the scores, not their order);
- the cosine similarity to the seeds' centroid, robust when seeds are few.

``fit`` first holds out a share of the seeds (whole seed groups, so one
person's devices stay on one side), trains on the rest and measures how
high the held-out seeds rank among all non-training devices: recall and lift
at several reaches, AUC, and the random line, with 95% intervals. That report
is ``quality_``. Then, with ``refit``, it trains again on every seed; the
report describes the slightly weaker model trained without the held-out part.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize

REACHES = (0.01, 0.02, 0.05, 0.1, 0.2)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class LookalikeModel(BaseEstimator):
    """Scikit-learn style: parameters in ``__init__``, ``fit(X, seeds)``, learned ``*_``.

    ``X`` is the (devices x categories) matrix of raw interest scores of
    every eligible device; ``seeds`` the row numbers of seed devices;
    ``groups`` (optional, one per seed) keeps seeds of one group together
    when holding out.
    """

    def __init__(
        self,
        holdout: float = 0.2,
        negatives_per_seed: int = 20,
        max_negatives: int = 200_000,
        C: float = 1.0,
        centroid_weight: float = 0.5,
        refit: bool = True,
        reaches: tuple[float, ...] = REACHES,
        random_state: int = 0,
    ):
        self.holdout = holdout
        self.negatives_per_seed = negatives_per_seed
        self.max_negatives = max_negatives
        self.C = C
        self.centroid_weight = centroid_weight
        self.refit = refit
        self.reaches = reaches
        self.random_state = random_state

    def fit(self, X: sp.spmatrix, seeds: np.ndarray, groups: np.ndarray | None = None):
        X = sp.csr_matrix(X)
        seeds = np.unique(np.asarray(seeds, dtype=np.int64))
        if len(seeds) == 0:
            raise ValueError("no seeds to learn from")
        df = np.bincount(X.indices, minlength=X.shape[1])
        self.idf_ = (np.log((1 + X.shape[0]) / (1 + df)) + 1).astype(np.float32)
        Z = self._transform(X)
        self.quality_ = None
        if self.holdout > 0:
            train, test = self.split(seeds, groups)
            self._fit_parts(Z, train)
            self.quality_ = quality_report(self._blend(Z), train, test, self.reaches)
        if self.refit or self.holdout <= 0:
            self._fit_parts(Z, seeds)
        self.seeds_ = seeds
        return self

    def score_devices(self, X: sp.spmatrix) -> np.ndarray:
        """Likeness to the seeds, higher is closer; comparable across devices of one fit."""
        return self._blend(self._transform(sp.csr_matrix(X)))

    def split(self, seeds: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(train, held-out) seed rows: whole groups in a fixed pseudo-random order until
        ``holdout`` of the seeds are held out. The same groups give the same split."""
        seeds = np.asarray(seeds, dtype=np.int64)
        keys = seeds.astype(np.uint64) if groups is None else np.asarray(groups, dtype=np.uint64)
        with np.errstate(over="ignore"):
            mixed = (keys ^ np.uint64(self.random_state)) * _GOLDEN
        unique, inverse, counts = np.unique(mixed, return_inverse=True, return_counts=True)
        target = max(1, round(self.holdout * len(seeds)))
        held_groups = np.searchsorted(np.cumsum(counts), target) + 1
        held = inverse < held_groups
        if held.all():
            held[np.argmax(inverse)] = False
        return seeds[~held], seeds[held]

    # -- internals -----------------------------------------------------------

    def _transform(self, X: sp.csr_matrix) -> sp.csr_matrix:
        Z = X.astype(np.float32, copy=True)
        np.log1p(Z.data, out=Z.data)
        Z = Z @ sp.diags(self.idf_)
        return normalize(Z, copy=False)

    def _fit_parts(self, Z: sp.csr_matrix, positives: np.ndarray) -> None:
        rng = np.random.default_rng(self.random_state)
        n = Z.shape[0]
        wanted = min(self.max_negatives, self.negatives_per_seed * len(positives), n)
        pool = np.ones(n, dtype=bool)
        pool[positives] = False
        unlabelled = rng.choice(np.flatnonzero(pool), min(wanted, int(pool.sum())), replace=False)
        centroid = np.asarray(Z[positives].mean(axis=0)).ravel()
        self.centroid_ = centroid / (np.linalg.norm(centroid) or 1.0)
        X_train = sp.vstack([Z[positives], Z[unlabelled]])
        y = np.r_[np.ones(len(positives)), np.zeros(len(unlabelled))]
        self.classifier_ = LogisticRegression(C=self.C, class_weight="balanced", max_iter=1000).fit(
            X_train, y
        )
        self.coef_ = self.classifier_.coef_.ravel()
        # Each scorer standardised on the unlabelled sample, so they blend fairly.
        parts = self._parts(Z[unlabelled])
        self.part_mean_ = parts.mean(axis=0)
        self.part_std_ = parts.std(axis=0) + 1e-9

    def _parts(self, Z: sp.csr_matrix) -> np.ndarray:
        return np.column_stack([Z @ self.centroid_, Z @ self.coef_])

    def _blend(self, Z: sp.csr_matrix) -> np.ndarray:
        z = (self._parts(Z) - self.part_mean_) / self.part_std_
        w = self.centroid_weight
        return w * z[:, 0] + (1 - w) * z[:, 1]


def candidate_ranks(scores: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every device but the training seeds, best score first (``order``), and each
    device's place in that order (``rank``; training seeds keep rank 0 but are never
    looked up)."""
    candidate = np.ones(len(scores), dtype=bool)
    candidate[train] = False
    order = np.flatnonzero(candidate)
    order = order[np.argsort(-scores[order], kind="stable")]
    rank = np.zeros(len(scores), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return order, rank


def quality_report(
    scores: np.ndarray, train: np.ndarray, test: np.ndarray, reaches=REACHES
) -> dict:
    """How high the held-out seeds rank among all devices but the training seeds.

    At reach r the audience is the top ``r`` share of eligible devices (as a
    lookalike of that reach would be); recall is the share of held-out seeds
    inside it, lift is recall over the random line (the audience's share of
    the candidates). AUC: held-out seeds against every other candidate.
    """
    n = len(scores)
    order, rank = candidate_ranks(scores, train)
    held = rank[test]
    at = []
    for reach in reaches:
        k = min(round(reach * n), len(order))
        hits = int((held < k).sum())
        recall = hits / len(test)
        random_recall = k / len(order)
        low, high = _wilson(hits, len(test))
        at.append(
            {
                "reach": reach,
                "devices": k,
                "recall": round(recall, 4),
                "recall_95": [round(low, 4), round(high, 4)],
                "random_recall": round(random_recall, 4),
                "lift": round(recall / random_recall, 3) if random_recall else None,
                "lift_95": [round(low / random_recall, 3), round(high / random_recall, 3)]
                if random_recall
                else None,
            }
        )
    return {
        "heldout_seeds": int(len(test)),
        "train_seeds": int(len(train)),
        "eligible": int(n),
        "auc": round(auc(scores[order], np.isin(order, test)), 4),
        "random_auc": 0.5,
        "at": at,
    }


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    n_pos = int(positive.sum())
    n_neg = len(scores) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
