"""`collect --ray`: episodes recorded by Ray workers, written by one writer in seed order.

How episodes reach storage: each episode is a Ray task (one CPU) that records into a
`RecordedEpisode` in the worker's memory, exactly as the local path records into the store
(`agent.collection.record_episode`, same seeds, same lockstep perception); the driver, the
dataset's only writer, replays each into the `EpisodeStore` in trial order as the earlier ones
arrive. So a `--ray` dataset is the one the local path would write (the same episodes in the same
order, appended after what the store holds), one file set whatever the cluster size, and
`train --data` reads it as before.

Crash safety: a worker killed mid-episode loses that episode only, and Ray re-runs it (same seed,
same episode) on another worker. An episode whose worker dies on every try (a crash that repeats
with its seed) is lost: counted in the store's "lost", reported, and skipped, here and by the
next `collect`, which would otherwise crash on it again. The store commits an episode at a time
(`models.tpm.dataset`), so a killed driver loses the episodes not yet replayed, and the next
`collect` continues after the last committed one. Results wait for an earlier episode in
memory, so at most a window of episodes (a few per CPU) is submitted at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.cluster import Lost, RaySpec, connected, run_ordered
from agent.collection import CollectSettings, EpisodeResult, Trial, plan_trials, record_episode
from drivers.sim.catalog import Catalog
from models.tpm.dataset import EpisodeStore

#: episodes submitted per cluster CPU beyond those being written (bounds the driver's memory)
WINDOW_PER_CPU = 2


def _copied(value: Any) -> Any:
    return np.array(value) if isinstance(value, np.ndarray) else value


@dataclass
class RecordedEpisode:
    """One episode held in a worker's memory with the store's writing calls, to be replayed."""

    info: dict[str, Any] = field(default_factory=dict)
    #: each `add_step` call's arguments, arrays copied (the caller may reuse its buffers)
    steps: list[tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    keep: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    result: EpisodeResult | None = None

    def begin_episode(self, info: Mapping[str, Any]) -> None:
        self.info = dict(info)

    def add_step(self, *args: Any, **kwargs: Any) -> None:
        """The store's `add_step`, noted to be made again by `replay` (same arguments)."""
        self.steps.append(
            (tuple(_copied(a) for a in args), {k: _copied(v) for k, v in kwargs.items()})
        )

    def end_episode(self, keep: bool = True, **extra: Any) -> bool:
        self.keep, self.extra = keep and bool(self.steps), dict(extra)
        return self.keep

    def abort_episode(self) -> None:
        """Nothing to undo here: the exception reaches the driver and nothing is replayed."""

    def replay(self, store: EpisodeStore) -> bool:
        """Write the episode into `store` as the local path would have; returns kept."""
        store.begin_episode(self.info)
        for args, kwargs in self.steps:
            store.add_step(*args, **kwargs)
        return store.end_episode(keep=self.keep, **self.extra)


#: per worker process: the perception factory and the pilot, built once for a config
_PARTS: dict[str, tuple[Callable[[], Any], Any]] = {}


def record_remote(
    config: Any, settings: CollectSettings, trial: Trial, pilot: Path | None
) -> RecordedEpisode:
    """The Ray task: one episode recorded in this worker's memory (its own MuJoCo world)."""
    from agent.backends import pipeline_factory

    key = f"{config.model_dump_json()}|{pilot}"
    if key not in _PARTS:
        policy = None
        if pilot is not None:
            from models.tpm.onnx_policy import OnnxTPMPolicy

            policy = OnnxTPMPolicy(pilot, providers=config.policy.providers)
        _PARTS.clear()
        _PARTS[key] = (pipeline_factory(config, lockstep=True), policy)
    new_pipeline, policy = _PARTS[key]
    episode = RecordedEpisode()
    episode.result = record_episode(episode, trial, settings, new_pipeline, policy)
    return episode


def collect_on_ray(
    store: EpisodeStore,
    settings: CollectSettings,
    config: Any,
    catalog: Catalog,
    spec: RaySpec,
    *,
    pilot: Path | None = None,
    on_done: Callable[[EpisodeResult], None] | None = None,
) -> Iterator[EpisodeResult]:
    """Record `settings.episodes` episodes on Ray, appending to `store` in seed order.

    `on_done` sees each result as its task completes (progress); the results are yielded once
    written. An episode lost on every retry yields a result with `lost` set (counted in the
    store's "lost", so its seed is not drawn again).
    """
    trials = plan_trials(store, settings, catalog)
    jobs = [(config, settings, trial, pilot) for trial in trials]
    pilot_failures = "expert_failures" if pilot is None else "pilot_failures"

    def done(_: int, episode: Any) -> None:
        if on_done is not None and isinstance(episode, RecordedEpisode) and episode.result:
            on_done(episode.result)

    with connected(spec) as cpus:
        window = WINDOW_PER_CPU * cpus
        for index, episode in run_ordered(record_remote, jobs, spec, on_done=done, window=window):
            if isinstance(episode, Lost):
                store.bump("lost")
                lost = EpisodeResult(trials[index], False, 0, episode.reason, 0.0, lost=True)
                if on_done is not None:
                    on_done(lost)
                yield lost
                continue
            episode.replay(store)
            assert episode.result is not None
            if not episode.result.success:
                store.bump(pilot_failures)
            yield episode.result
