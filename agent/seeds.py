"""Which scene seeds are for what: demonstrations, validation (choosing), evaluation (reporting).

A scene seed draws a trial's task, its layout and its look (`agent.collection.draw_trial`,
`drivers.sim.scene`). Three uses, three disjoint ranges:

- demonstrations (`collect`, `collect --ray`, DAgger): episode `index` of
  `collect --seed BASE` is `BASE * 100_000 + index`; the default `--seed 0` records seeds 0, 1, ...
  Collection refuses any seed in the held-out ranges below (bases 9000-9999).
- validation (`eval --split validation`): checkpoints, recipes and anything else chosen by a
  success rate are chosen here.
- evaluation (`eval`, the default `--split evaluation`): the reported tables, and nothing else.

`eval --seed S` takes block S of its range: trial i of every cell has seed `start + S * 10_000 + i`
(the same scene for trial i in every cell, so variants are compared on the same scenes).
"""

from __future__ import annotations

#: episodes one `collect --seed BASE` numbers before running into BASE + 1's seeds
EPISODES_PER_BASE = 100_000
#: `eval --split validation`: selection (checkpoints, recipes, hyperparameters)
VALIDATION_SEEDS = range(950_000_000, 1_000_000_000)
#: `eval` (`--split evaluation`): the reported tables only
EVALUATION_SEEDS = range(900_000_000, 950_000_000)
#: eval splits by name, as `eval --split` takes them
EVAL_SPLITS: dict[str, range] = {"validation": VALIDATION_SEEDS, "evaluation": EVALUATION_SEEDS}
#: trials one `eval --seed S` block holds (trial i < this)
TRIALS_PER_BLOCK = 10_000
#: seeds no demonstration may use
HELD_OUT = range(EVALUATION_SEEDS.start, VALIDATION_SEEDS.stop)  # the two ranges, adjacent


class SeedRangeError(ValueError):
    """A seed outside the range its use allows (one line naming the ranges)."""


def episode_seed(base: int, index: int) -> int:
    """Scene seed of demonstration episode `index` of `collect --seed base`."""
    return base * EPISODES_PER_BASE + index


def check_collection_seeds(base: int, start: int, count: int) -> None:
    """SeedRangeError unless episodes start .. start + count - 1 of `base` avoid the held-out
    ranges (validation and evaluation): demonstrations must never show those scenes."""
    if count < 1:
        return
    first, last = episode_seed(base, start), episode_seed(base, start + count - 1)
    if first < HELD_OUT.stop and last >= HELD_OUT.start:
        bad = (HELD_OUT.start // EPISODES_PER_BASE, (HELD_OUT.stop - 1) // EPISODES_PER_BASE)
        raise SeedRangeError(
            f"collect --seed {base}: episode seeds {first}-{last} reach the held-out seeds "
            f"{describe(HELD_OUT)} (validation {describe(VALIDATION_SEEDS)}, evaluation "
            f"{describe(EVALUATION_SEEDS)}); use a --seed outside {bad[0]}-{bad[1]}"
        )


def eval_seed(split: str, block: int, index: int) -> int:
    """Scene seed of trial `index` of `eval --split split --seed block`; SeedRangeError when the
    block or the index leave the split's range (or there is no such split)."""
    seeds = EVAL_SPLITS.get(split)
    if seeds is None:
        raise SeedRangeError(f"no seed split {split!r}; use {' or '.join(EVAL_SPLITS)}")
    if not 0 <= index < TRIALS_PER_BLOCK:
        raise SeedRangeError(f"trial {index}: a seed block holds {TRIALS_PER_BLOCK} trials")
    seed = seeds.start + block * TRIALS_PER_BLOCK + index
    if block < 0 or seed not in seeds:
        blocks = len(seeds) // TRIALS_PER_BLOCK
        raise SeedRangeError(
            f"--seed {block}: the {split} seeds {describe(seeds)} hold blocks 0-{blocks - 1}"
        )
    return seed


def describe(seeds: range) -> str:
    """A range as the report writes it: first-last, inclusive."""
    return f"{seeds.start}-{seeds.stop - 1}"
