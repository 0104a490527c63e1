"""The lookalike model: who, among the eligible devices, looks like the seeds.

Positive-unlabelled learning on interest profiles. Features are the decayed
category scores, ``log1p``-damped, weighted by inverse document frequency (a
category everyone reads says little) and scaled to unit length, so how much a
device does sets no feature, only the mix of what it reads. Two scorers are
blended after standardising each on the unlabelled sample:

- a logistic regression of seeds against a random sample of non-seed devices
  (the unlabelled class; some of them are unknown positives, which only
  shrinks the scores, not their order). The sample is reweighted to the seeds'
  mix of ID types: a seed list of MAIDs then teaches nothing about being a
  MAID, only about what its devices read. Seeds may carry a value (purchase
  amount), which weights them, as value-based lookalikes do;
- the cosine similarity to the seeds' (value-weighted) centroid less the
  matched unlabelled devices' centroid: what sets the seeds apart, not the
  breadth that busy devices (of any interest) share; robust when seeds are few.

``fit`` first holds out a share of the seeds (whole seed groups, so one
person's devices stay on one side), trains on the rest and measures how
high the held-out seeds rank among all non-training devices: recall and lift
at several reaches, AUC, and the random line, with 95% intervals. Beside it,
the permutation baseline: the same pipeline trained on random seed lists of
the same size and ID-type mix, whose lift is what a list with no signal at
all would show (it is above 1 wherever the data lets type or activity leak).
The seeds' lift is reported relative to it, and a list whose lift cannot be
told from it at any reach is flagged as having no usable signal. That report
is ``quality_``. Then, with ``refit``, it trains again on every seed; the
report describes the slightly weaker model trained without the held-out part.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy.stats import binom, rankdata
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize

REACHES = (0.01, 0.02, 0.05, 0.1, 0.2)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_Z95 = 1.96
# A list is called useful when its held-out hits at some reach are beyond the
# baseline's interval with this chance (or less) of being luck, shared out
# over the reaches tested, so a random list is called useful 1 time in 100.
SIGNAL_ALPHA = 0.01


class LookalikeModel(BaseEstimator):
    """Scikit-learn style: parameters in ``__init__``, ``fit(X, seeds)``, learned ``*_``.

    ``X`` is the (devices x categories) matrix of raw interest scores of
    every eligible device; ``seeds`` the row numbers of seed devices;
    ``groups`` (optional, one per seed) keeps seeds of one group together
    when holding out; ``kinds`` (optional, one small integer per device: its
    ID type) is controlled for; ``values`` (optional, one per
    seed, >= 0) weights the seeds.
    """

    def __init__(
        self,
        holdout: float = 0.2,
        min_heldout: int = 20,
        negatives_per_seed: int = 20,
        max_negatives: int = 200_000,
        C: float = 1.0,
        centroid_weight: float = 0.5,
        baseline_repeats: int = 3,
        refit: bool = True,
        reaches: tuple[float, ...] = REACHES,
        random_state: int = 0,
    ):
        self.holdout = holdout
        self.min_heldout = min_heldout
        self.negatives_per_seed = negatives_per_seed
        self.max_negatives = max_negatives
        self.C = C
        self.centroid_weight = centroid_weight
        self.baseline_repeats = baseline_repeats
        self.refit = refit
        self.reaches = reaches
        self.random_state = random_state

    def fit(
        self,
        X: sp.spmatrix,
        seeds: np.ndarray,
        groups: np.ndarray | None = None,
        kinds: np.ndarray | None = None,
        values: np.ndarray | None = None,
    ):
        X = sp.csr_matrix(X)
        seeds, first = np.unique(np.asarray(seeds, dtype=np.int64), return_index=True)
        if len(seeds) == 0:
            raise ValueError("no seeds to learn from")
        groups = None if groups is None else np.asarray(groups)[first]
        weight = np.ones(X.shape[0], dtype=np.float64)
        if values is not None:
            weight[seeds] = np.asarray(values, dtype=np.float64)[first]
            if weight[seeds].sum() <= 0:
                raise ValueError("every seed has a value of 0: nothing to weight the model by")
        kinds = np.zeros(X.shape[0], np.int64) if kinds is None else np.asarray(kinds, np.int64)
        df = np.bincount(X.indices, minlength=X.shape[1])
        self.idf_ = (np.log((1 + X.shape[0]) / (1 + df)) + 1).astype(np.float32)
        Z = self._transform(X)
        self.quality_ = None
        if self.holdout > 0:
            train, test = self.split(seeds, groups)
            if len(test) < self.min_heldout:
                raise ValueError(
                    f"the held-out part has {len(test):,} seed devices ({self.holdout:.0%} of "
                    f"{len(seeds):,}, in whole ID-graph groups); at least {self.min_heldout:,} "
                    "are needed for its interval to mean anything"
                )
            baseline = self._baseline(Z, seeds, kinds, len(test))
            self._fit_parts(Z, train, kinds, weight)
            report = quality_report(self._blend(Z), train, test, self.reaches)
            self.quality_ = compare_to_baseline(report, baseline)
        if self.refit or self.holdout <= 0:
            self._fit_parts(Z, seeds, kinds, weight)
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

    def _fit_parts(
        self, Z: sp.csr_matrix, positives: np.ndarray, kinds: np.ndarray, weight: np.ndarray
    ) -> None:
        rng = np.random.default_rng(self.random_state)
        n = Z.shape[0]
        wanted = min(self.max_negatives, self.negatives_per_seed * len(positives), n)
        pool = np.ones(n, dtype=bool)
        pool[positives] = False
        unlabelled = rng.choice(np.flatnonzero(pool), min(wanted, int(pool.sum())), replace=False)
        seed_weight = weight[positives] / weight[positives].mean()
        negative_weight = matched_weights(kinds[positives], kinds[unlabelled], seed_weight)
        # The seeds' centroid less that of the matched unlabelled devices: what sets
        # the seeds apart, not what every device (of their type) reads, nor how much.
        centroid = (
            np.asarray(Z[positives].T @ seed_weight - Z[unlabelled].T @ negative_weight).ravel()
            / seed_weight.sum()
        )
        self.centroid_ = centroid / (np.linalg.norm(centroid) or 1.0)
        X_train = sp.vstack([Z[positives], Z[unlabelled]])
        y = np.r_[np.ones(len(positives)), np.zeros(len(unlabelled))]
        # Both classes weigh half of the sample (as class_weight="balanced" would).
        sample_weight = np.r_[seed_weight, negative_weight] * (len(y) / (2 * seed_weight.sum()))
        self.classifier_ = LogisticRegression(C=self.C, max_iter=1000).fit(
            X_train, y, sample_weight=sample_weight
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

    def _baseline(
        self,
        Z: sp.csr_matrix,
        seeds: np.ndarray,
        kinds: np.ndarray,
        heldout: int,
    ) -> list[np.ndarray]:
        """Lift at each reach of the same pipeline on ``baseline_repeats`` random seed lists
        with the seeds' size and ID-type mix (one array per repeat).

        Each repeat trains on a random list's training part; its held-out part
        would be a random draw of the seeds' ID-type mix, so its expected
        recall is read off every non-training device of each type, weighted by
        the mix: the same expectation, without the noise of one small draw.
        """
        rng = np.random.default_rng(self.random_state + 1)
        mix = np.bincount(kinds[seeds], minlength=kinds.max() + 1)
        share = mix / mix.sum()
        by_kind = [np.flatnonzero(kinds == k) for k in range(len(mix))]
        lifts = []
        for _ in range(self.baseline_repeats):
            drawn = np.concatenate(
                [rng.choice(by_kind[k], min(c, len(by_kind[k])), replace=False)
                 for k, c in enumerate(mix) if c]
            )  # fmt: skip
            train = rng.permutation(drawn)[heldout:]
            self._fit_parts(Z, train, kinds, np.ones(Z.shape[0]))
            order, _ = candidate_ranks(self._blend(Z), train)
            kind_of = kinds[order]
            totals = np.bincount(kind_of, minlength=len(mix))
            lift = []
            for reach in self.reaches:
                k = min(round(reach * Z.shape[0]), len(order))
                top = np.bincount(kind_of[:k], minlength=len(mix))
                recall = float((share * top / np.maximum(totals, 1)).sum())
                lift.append(recall / (k / len(order)) if k else 1.0)
            lifts.append(np.array(lift))
        return lifts


def matched_weights(
    positive_strata: np.ndarray, negative_strata: np.ndarray, positive_weight: np.ndarray
) -> np.ndarray:
    """Weights that give the unlabelled sample the positives' (weighted) mix of strata
    (ID types) and the same total weight: a stratum then says nothing about being a
    seed. A stratum without positives gets no weight; one without unlabelled devices
    cannot be matched."""
    size = int(max(positive_strata.max(), negative_strata.max())) + 1
    wanted = np.bincount(positive_strata, weights=positive_weight, minlength=size)
    have = np.bincount(negative_strata, minlength=size).astype(np.float64)
    per_stratum = np.divide(wanted, have, out=np.zeros(size), where=have > 0)
    weights = per_stratum[negative_strata]
    total = weights.sum()
    return weights * (positive_weight.sum() / total) if total > 0 else np.ones(len(weights))


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
                "hits": hits,
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


def compare_to_baseline(report: dict, baseline: list[np.ndarray]) -> dict:
    """``report`` with the permutation baseline beside it: at each reach the baseline's
    lift (mean of the repeats, 95% interval of one repeat), the seeds' lift relative to
    it with an interval, and ``signal``: whether at some reach the held-out hits are
    more than the baseline's upper lift would give, beyond luck (an exact binomial
    tail, ``SIGNAL_ALPHA`` shared over the reaches); ``verdict`` says so."""
    lifts = np.array(baseline)
    mean = lifts.mean(axis=0)
    spread = _Z95 * lifts.std(axis=0, ddof=1) if len(lifts) > 1 else np.zeros(len(mean))
    heldout, above = report["heldout_seeds"], []
    for row, centre, half in zip(report["at"], mean, spread, strict=True):
        row["baseline_lift"] = round(float(centre), 3)
        row["baseline_lift_95"] = [round(float(centre - half), 3), round(float(centre + half), 3)]
        row["relative_lift"] = round(float(row["lift"] / centre), 3)
        row["relative_lift_95"] = [round(float(v / centre), 3) for v in row["lift_95"]]
        chance = min(1.0, (centre + half) * row["random_recall"])
        if binom.sf(row["hits"] - 1, heldout, chance) < SIGNAL_ALPHA / len(report["at"]):
            above.append(row["reach"])
    report["baseline"] = {
        "repeats": len(lifts),
        "method": "random seed lists, same size and ID-type mix",
    }
    report["signal"] = bool(above)
    if above:
        report["verdict"] = (
            "usable signal: held-out lift above the no-signal baseline at "
            + ", ".join(f"{r:.0%}" for r in above)
        )
    else:
        worst = report["at"][0]
        report["verdict"] = (
            f"no usable signal: at every reach the held-out lift ({heldout:,} held-out seeds) "
            "is within what random seed lists of this size and ID-type mix get "
            f"(at {worst['reach']:.0%}: {worst['lift']:.2f} vs baseline "
            f"{worst['baseline_lift_95'][0]:.2f}-{worst['baseline_lift_95'][1]:.2f})"
        )
    return report


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    n_pos = int(positive.sum())
    n_neg = len(scores) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _wilson(hits: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
