"""Lookalike quality over a matrix of generated worlds, against the oracle and two baselines.

    python bench/lookalike_quality.py [--devices N] [--campaign NAME ...] [--folds 5] [--json]

For each campaign of bench/lookalike_worlds.py's MATRIX (or those named), in one
run: write its world with bench/worlds.py, build a fresh instance, ingest and
profile it, upload the converters' seed list and a random list of the same
size and ID type, then

- create the lookalike through the product (``create_lookalike`` at 5%: features,
  held-out fit with its permutation baseline, refit, scoring every eligible
  device, storing the audience) and time it;
- try the random list: it must be refused as "no usable signal" (it is then
  forced, to read its report);
- measure held-out lift at 1, 5 and 10% reach pooled over K folds (whole seed
  groups held out, every seed held out once) for dmp, a plain seed centroid
  (cosine to the seeds' mean TF-IDF row), a plain PU logistic regression
  (seeds against a random sample, class-balanced, same features) and the
  oracle (the planted propensity); and the random list's pooled lift over the
  product's permutation baseline.

Targets: dmp >= 0.7x the oracle at 1% and >= 0.8x at 5% on every world (the
minimum is printed), never below the better of centroid and PU LR; the random
list within 0.8-1.25x of the baseline at 1, 5 and 10% and flagged.
--devices N sets every world's size.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from lookalike_worlds import MATRIX, Campaign, plant, write_list
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize
from worlds import NOW, write

from dmp.config import load_config
from dmp.errors import DmpError
from dmp.ingest import ingest_files
from dmp.interests.profiles import build_profiles
from dmp.lookalike.audience import NoSignal, create_lookalike
from dmp.lookalike.features import DEVICES, load_features, seed_rows
from dmp.lookalike.model import LookalikeModel, candidate_ranks
from dmp.lookalike.seeds import upload_seed_list
from dmp.store import open_store

print = functools.partial(print, flush=True)  # noqa: A001 (progress while it runs)
OUT = Path(__file__).resolve().parent / "out" / "lookalike_quality"
REACHES = (0.01, 0.05, 0.1)
TARGETS = {0.01: 0.7, 0.05: 0.8}


def measure(campaign: Campaign, folder: Path, folds: int) -> dict:
    """One campaign: world, instance, seed lists, product run, K-fold comparison."""
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    world = write(campaign.world, folder / "world")
    truth = pd.read_csv(world["truth"])
    planted = plant(campaign, truth)
    config = load_config(folder / "home", (f"interests.category_rules={world['rules']}",), env={})
    with open_store(config) as store:
        ingest_files(store, config, [world["events"]], now=NOW)
        build_profiles(store, config, NOW)
        lists = {}
        for kind in ("converters", "random"):
            path = write_list(planted[kind], folder / f"{kind}.csv", campaign.seed_type)
            report = upload_seed_list(
                store, config, path, kind, "bench", campaign.seed_type, now=NOW
            )
            lists[kind] = report["seed_list_id"]
        started = time.perf_counter()
        product = create_lookalike(store, config, "conv", "converters", "bench", "5%", now=NOW)
        product_s = time.perf_counter() - started
        try:
            create_lookalike(store, config, "rand", "random", "bench", "5%", now=NOW)
            flagged = False
        except NoSignal:
            flagged = True
        forced = create_lookalike(
            store, config, "rand", "random", "bench", "5%", now=NOW, force=True
        )
        features = load_features(store.con, config, NOW)
        seeds = {kind: seed_rows(store.con, i) for kind, i in lists.items()}
        rows = store.con.execute(
            f"SELECT row, id, id_type FROM {DEVICES} ORDER BY row"
        ).df()  # fmt: skip
    propensity = rows.merge(truth.assign(p=planted["propensity"]), on=["id", "id_type"])["p"]
    evaluation = compare(features, seeds, propensity.to_numpy(), folds)
    baseline = {row["reach"]: row["baseline_lift"] for row in forced["quality"]["at"]}
    random_lift = evaluation.pop("random list")
    return {
        "campaign": campaign.name,
        "devices": features.devices,
        "seed_devices": len(seeds["converters"].rows),
        "lift": evaluation,
        "random_vs_baseline": {r: random_lift[r] / baseline[r] for r in REACHES},
        "random_flagged": flagged,
        "product": {
            "signal": product["quality"]["signal"],
            "auc": product["quality"]["auc"],
            "train_seeds": product["quality"]["train_seeds"],
            "heldout_seeds": product["quality"]["heldout_seeds"],
            "seconds": product_s,
        },
        "seconds": time.perf_counter() - start,
    }


def compare(features, seeds: dict, propensity: np.ndarray, folds: int) -> dict:
    """Pooled K-fold held-out lift of every ranking at each reach."""
    X, kinds = features.matrix, features.kinds
    tfidf = LookalikeModel(holdout=0)
    tfidf.idf_ = (
        np.log((1 + X.shape[0]) / (1 + np.bincount(X.indices, minlength=X.shape[1]))) + 1
    ).astype(np.float32)
    Z = tfidf._transform(X)
    jitter = np.random.default_rng(0).random(len(propensity)) * 1e-9
    rankers = {
        "dmp": lambda train: LookalikeModel(holdout=0).fit(X, train, kinds=kinds).score_devices(X),
        "centroid": lambda train: Z @ normalize(np.asarray(Z[train].mean(axis=0)))[0],
        "PU LR": lambda train: plain_pu(Z, train),
        "oracle": lambda train: propensity + jitter,
    }
    results = {name: pooled(score, seeds["converters"], folds) for name, score in rankers.items()}
    results["random list"] = pooled(rankers["dmp"], seeds["random"], folds)
    return results


def plain_pu(Z: sp.csr_matrix, train: np.ndarray) -> np.ndarray:
    """Seeds against 20 random devices each, class-balanced logistic regression."""
    rng = np.random.default_rng(0)
    pool = np.setdiff1d(np.arange(Z.shape[0]), train)
    unlabelled = rng.choice(pool, min(len(pool), 20 * len(train)), replace=False)
    y = np.r_[np.ones(len(train)), np.zeros(len(unlabelled))]
    model = LogisticRegression(class_weight="balanced", max_iter=1000)
    model.fit(sp.vstack([Z[train], Z[unlabelled]]), y)
    return Z @ model.coef_.ravel()


def pooled(score, seeds, folds: int) -> dict:
    """Held-out hits over the random line, every seed group held out once."""
    unique, inverse = np.unique(seeds.keys, return_inverse=True)
    fold = np.random.default_rng(1).permutation(len(unique))[inverse] % folds
    hits, expected = np.zeros(len(REACHES)), np.zeros(len(REACHES))
    for k in range(folds):
        train, test = seeds.rows[fold != k], seeds.rows[fold == k]
        order, rank = candidate_ranks(score(train), train)
        for i, reach in enumerate(REACHES):
            top = round(reach * len(rank))
            hits[i] += (rank[test] < top).sum()
            expected[i] += len(test) * top / len(order)
    return {reach: float(h / e) for reach, h, e in zip(REACHES, hits, expected, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, help="Every world's size.")
    parser.add_argument("--campaign", action="append", help="Only these (repeatable).")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    chosen = [c for c in MATRIX if not args.campaign or c.name in args.campaign]
    if args.devices:
        chosen = [replace(c, world=c.world.scaled(args.devices)) for c in chosen]
    results = []
    for campaign in chosen:
        try:
            result = measure(campaign, OUT / campaign.name, args.folds)
        except DmpError as exc:
            result = {"campaign": campaign.name, "error": str(exc)}
        results.append(result)
        if not args.json:
            show(result)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        summary([r for r in results if "error" not in r])


def show(r: dict) -> None:
    if "error" in r:
        print(f"\n{r['campaign']}: {r['error']}")
        return
    p = r["product"]
    print(
        f"\n{r['campaign']}: {r['devices']:,} devices, {r['seed_devices']:,} seed devices "
        f"(product split {p['train_seeds']:,} train / {p['heldout_seeds']:,} held out, "
        f"AUC {p['auc']:.3f}, create {p['seconds']:.1f} s)"
    )
    print(f"  {'held-out lift at':<18}" + "".join(f"{x:>8.0%}" for x in REACHES))
    for name, lifts in r["lift"].items():
        print(f"  {name:<18}" + "".join(f"{lifts[x]:>8.2f}" for x in REACHES))
    ratios = "".join(f"{r['lift']['dmp'][x] / r['lift']['oracle'][x]:>8.2f}" for x in REACHES)
    print(f"  {'dmp / oracle':<18}{ratios}")
    random = "".join(f"{r['random_vs_baseline'][x]:>8.2f}" for x in REACHES)
    print(f"  {'random / baseline':<18}{random}   flagged no usable signal: {r['random_flagged']}")


def summary(results: list[dict]) -> None:
    if not results:
        return
    print("\nminimum over the matrix:")
    for reach, target in TARGETS.items():
        ratios = {r["campaign"]: r["lift"]["dmp"][reach] / r["lift"]["oracle"][reach]
                  for r in results}  # fmt: skip
        worst = min(ratios, key=ratios.get)
        print(f"  dmp / oracle at {reach:.0%}: {ratios[worst]:.2f} ({worst}; target {target})")
    short = [
        f"{r['campaign']} at {x:.0%}"
        for r in results
        for x in REACHES
        if r["lift"]["dmp"][x] < max(r["lift"]["centroid"][x], r["lift"]["PU LR"][x])
    ]
    print(f"  below the better of centroid and PU LR: {', '.join(short) or 'never'}")
    spread = [v for r in results for v in r["random_vs_baseline"].values()]
    print(
        f"  random list / baseline: {min(spread):.2f}-{max(spread):.2f} (target 0.8-1.25); "
        f"flagged on {sum(r['random_flagged'] for r in results)} of {len(results)} worlds"
    )


if __name__ == "__main__":
    main()
