"""Where a dataset's episodes came from, so that `train` can say what it learns from.

`record` writes `source` into each episode's metadata (`teleop`: an input device drove the arm;
`guiding`: the arm was moved by hand and the actions are the measured moves); `collect` writes
none, and its DAgger episodes name the `pilot` policy that drove a share of the steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from models.tpm.dataset import EpisodeStore


def episode_source(info: Mapping[str, Any]) -> str:
    """`teleop` or `guiding` (`record`), else `collect`'s: `dagger` (a pilot policy drove a share
    of the steps, the expert labelled them) or `sim` (the scripted expert alone)."""
    if "source" in info:
        return str(info["source"])
    return "dagger" if info.get("pilot") not in (None, "expert") else "sim"


def source_counts(stores: Iterable[EpisodeStore]) -> dict[str, tuple[int, int]]:
    """(episodes, steps) per source over `stores`, in the order the sources first appear."""
    counts: dict[str, tuple[int, int]] = {}
    for store in stores:
        lengths = np.diff(np.concatenate([[0], store.episode_ends]))
        for info, n in zip(store.episodes, lengths, strict=True):
            source = episode_source(info)
            episodes, steps = counts.get(source, (0, 0))
            counts[source] = (episodes + 1, steps + int(n))
    return counts


def describe_sources(counts: Mapping[str, tuple[int, int]]) -> str:
    """One line: `teleop 2 episodes (60 steps), sim 9 episodes (255 steps)`."""
    return ", ".join(
        f"{source} {e} episode{'s' * (e != 1)} ({s} steps)" for source, (e, s) in counts.items()
    )
