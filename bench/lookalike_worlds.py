"""Campaigns and seed lists planted on bench/worlds.py's worlds, for the lookalike bench.

bench/worlds.py makes the devices and their browsing (taxonomy-drawn personas,
overlap, global noise, recency, Pareto activity, cookies and MAIDs). This
module adds what a lookalike needs, on assumptions of its own rather than
dmp.generate's (one converting persona at a fixed rate, times a random draw):

- a campaign converts several personas at unequal rates (the first targeted
  persona converts best, each next one at half the rate), and
  ``converter_noise`` of the conversion mass is spread over every device
  alike (converters no behaviour can find);
- a device's propensity is its persona's rate plus that noise share; the
  oracle ranks devices by it;
- the seed list is ``seed_size`` converters of one ID type drawn by
  propensity (an agency's CRM holds the MAIDs of app buyers, say), and a
  random list of the same size and type is drawn beside it, the list with
  no signal at all.

``plant`` returns the lists and each device's propensity; ``write_list`` writes
one as an upload file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from worlds import WorldSpec


@dataclass(frozen=True)
class Campaign:
    """One row of the lookalike matrix: a world and a campaign planted on it."""

    name: str
    world: WorldSpec = field(default_factory=WorldSpec)
    targets: int = 1  # personas that convert
    converter_noise: float = 0.1  # share of the conversion mass spread over everyone
    seed_size: int = 1000
    seed_type: str = "maid"
    seed: int = 3


# The matrix: each axis pushed alone, then hard combinations. Sizes stay small
# enough for a laptop (20k-60k devices); --devices scales them all.
MATRIX = (
    Campaign("base"),
    Campaign("spread-3-noisy", targets=3, converter_noise=0.3),
    Campaign("overlap-50%", WorldSpec("overlap-50%", overlap=0.5), targets=2),
    Campaign("old-60d", WorldSpec("old-60d", recency_days=60, active_days=14), targets=2),
    Campaign("fresh-1d", WorldSpec("fresh-1d", recency_days=1, active_days=1)),
    Campaign("pareto-1.2", WorldSpec("pareto-1.2", pareto_shape=1.2), targets=2),
    Campaign("seeds-100", seed_size=100, targets=2),
    Campaign("seeds-50k", WorldSpec("big", devices=400_000, events_per_device=6), seed_size=50_000),
    Campaign("cookie-seeds-maid-10%", WorldSpec("maid-10%", maid_share=0.1), seed_type="cookie"),
    Campaign("maid-seeds-maid-90%", WorldSpec("maid-90%", maid_share=0.9), targets=2),
    Campaign(
        "hard-all",
        WorldSpec(
            "hard",
            personas=40,
            devices=40_000,
            recency_days=60,
            active_days=14,
            pareto_shape=1.2,
            overlap=0.5,
        ),
        targets=4,
        converter_noise=0.4,
    ),  # fmt: skip
)


def plant(campaign: Campaign, truth: pd.DataFrame) -> dict:
    """The campaign on a world's ``truth`` (id, id_type, persona): propensity per device,
    the converters' seed list and a random list of the same size and ID type."""
    rng = np.random.default_rng(campaign.seed)
    personas = campaign.world.personas
    targeted = rng.choice(personas, campaign.targets, replace=False)
    rate = np.zeros(personas)
    rate[targeted] = 0.5 ** np.arange(campaign.targets)
    persona = truth["persona"].to_numpy()
    share = np.bincount(persona, minlength=personas) / len(persona)
    rate /= (rate * share).sum()  # mean propensity 1 before noise
    propensity = (1 - campaign.converter_noise) * rate[persona] + campaign.converter_noise
    of_type = np.flatnonzero(truth["id_type"].to_numpy() == campaign.seed_type)
    size = min(campaign.seed_size, len(of_type) // 2)
    weights = propensity[of_type] / propensity[of_type].sum()
    converters = rng.choice(of_type, size, replace=False, p=weights)
    random = rng.choice(of_type, size, replace=False)
    ids = truth["id"].to_numpy()
    return {
        "propensity": propensity,
        "targeted": [int(t) for t in targeted],
        "converters": ids[converters],
        "random": ids[random],
    }


def write_list(ids: np.ndarray, path: Path, id_type: str) -> Path:
    """An upload file of ``ids`` with a header, as an agency would export it."""
    path.write_text(f"{id_type}\n" + "\n".join(ids) + "\n")
    return path
