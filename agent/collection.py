"""Demonstrations for the TPM policy: tasks drawn from the catalog, and scripted-expert episodes
recorded in lockstep simulation (no realtime thread). The `collect` command that runs them is
`agent.collect_command`.

Tasks: like the paper's, each names an object to pick and a place target with a skill: near the
user (a hand-over, the paper's most common case) or near another object of the same split ("put the
X next to the Y": an unseen cell has unseen X and Y, as in the paper), inside a container or on a
surface. The request text is a direct command the rule reasoner parses back into the same task,
so evaluation can run the full runtime (reasoner included) and check that it got the intended task.

Episodes: build the scene for a drawn task, render both views every control step (10 Hz), run the
same perception pipeline as the runtime (detect on the first frame, track, segment) for the
role-coded masks, read proprioception, ask the expert for its move, and step physics by one
control period. Images are rendered at the runtime's camera size and reduced with the policy's own
`prepare_views`, so the policy is trained on exactly what it will see. Only episodes the simulator
judges successful are kept; failures are counted in the dataset and reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from agent.messages import observation
from agent.seeds import check_collection_seeds, episode_seed
from drivers.base import RobotState
from drivers.sim import offscreen_gl
from drivers.sim.backgrounds import Randomisation
from drivers.sim.catalog import USER_NAME, Catalog
from models.perception import Percept, PerceptionPipeline
from models.tpm.dataset import EpisodeStore
from models.tpm.inputs import prepare_views
from models.tpm.policy import Policy
from models.types import Action, ActionLike, Skill, TaskSpec

if TYPE_CHECKING:  # these load mujoco, which must wait for offscreen_gl() below
    from drivers.sim.expert import ScriptedExpert
    from drivers.sim.rollout import LockstepScene
    from drivers.sim.state import SceneState
    from drivers.sim.success import SimJudge

# collection renders the sim in this process, and mujoco reads MUJOCO_GL once, when imported
offscreen_gl()

#: default draw weights per skill (hand-overs first, as in the paper's task list)
SKILL_WEIGHTS: dict[Skill, float] = {
    Skill.PLACE_NEAR: 0.5,
    Skill.PLACE_INSIDE: 0.25,
    Skill.PLACE_ON: 0.25,
}
#: of the `place_near` tasks, the share that hand over to the user (the rest: next to an object)
NEAR_USER_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class Trial:
    """One episode to run: the scene seed, the objects it must contain and the task."""

    seed: int
    split: str
    setting: str
    pick: str
    place: str
    skill: Skill

    @property
    def objects(self) -> list[str]:
        return [self.pick] if self.place == USER_NAME else [self.pick, self.place]

    @property
    def request(self) -> str:
        if self.place == USER_NAME:
            return f"give me the {self.pick}"
        prep = {
            Skill.PLACE_INSIDE: "in",
            Skill.PLACE_ON: "on top of",
            Skill.PLACE_NEAR: "next to",
        }[self.skill]
        return f"put the {self.pick} {prep} the {self.place}"

    def task(self) -> TaskSpec:
        return TaskSpec(request=self.request, skill=self.skill, pick=self.pick, place=self.place)

    def info(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "split": self.split,
            "setting": self.setting,
            "pick": self.pick,
            "place": self.place,
            "skill": self.skill.value,
            "request": self.request,
        }


def draw_trial(
    catalog: Catalog,
    seed: int,
    *,
    split: str = "seen",
    setting: str = "standard",
    weights: dict[Skill, float] | None = None,
) -> Trial:
    """A task drawn from `seed` (the same seed also lays out the scene).

    `place_near` goes to the user (`NEAR_USER_SHARE` of them) or next to another object of the
    split, any kind. The skill and pick are drawn first, so a seed keeps its skill and pick
    whichever place its near task draws.
    """
    rng = np.random.default_rng([seed, 7])
    objects = catalog.split(split)  # type: ignore[arg-type]
    picks = [o.name for o in objects if o.pickable]
    places = {
        Skill.PLACE_INSIDE: [o.name for o in objects if o.container],
        Skill.PLACE_ON: [o.name for o in objects if o.surface],
    }
    w = weights or SKILL_WEIGHTS
    skills = [s for s in w if s == Skill.PLACE_NEAR or places.get(s)]
    p = np.array([w[s] for s in skills], dtype=float)
    skill = skills[int(rng.choice(len(skills), p=p / p.sum()))]
    pick = picks[int(rng.integers(len(picks)))]
    if skill == Skill.PLACE_NEAR:
        others = [o.name for o in objects if o.name != pick]
        to_user = not others or rng.random() < NEAR_USER_SHARE
        place = USER_NAME if to_user else others[int(rng.integers(len(others)))]
    else:
        options = places[skill]
        place = options[int(rng.integers(len(options)))]
    return Trial(seed, split, setting, pick, place, skill)


# ------------------------------------------------------------------ episodes


@dataclass(frozen=True, slots=True)
class CollectSettings:
    """What to record and how the simulator runs (taken from the config's [sim] section)."""

    episodes: int
    seed: int = 0
    split: str = "seen"
    setting: str = "standard"
    views: tuple[str, ...] = ("front", "side")
    policy_size: int = 96
    render_width: int = 224
    render_height: int = 224
    control_hz: float = 10.0
    max_step_m: float = 0.02
    max_steps: int = 400
    catalog: Path | None = None
    backgrounds: Path | None = None
    #: domain randomisation of each episode's look (`drivers.sim.Randomisation`; None: off)
    randomise: Randomisation | None = None
    #: DAgger: the share of steps the expert drives when a pilot policy is given (0: the pilot
    #: drives every step; the expert still labels every step)
    expert_share: float = 1.0
    #: time from a step's frame to its command reaching the arm (realtime's capture-to-command):
    #: physics runs on under the previous command for this long first. Lockstep without it
    #: teaches actions for a world that waits; the runtime's world does not.
    latency_s: float = 0.0
    #: share of episodes in which the hand is closed on nothing for a few steps of the reach to
    #: the grasp (`EarlyClose`); the expert's labels after it say "open, go on"
    early_close: float = 0.0


@dataclass(frozen=True, slots=True)
class EarlyClose:
    """A perturbation of one episode (as DART injects noise into demonstrations): from the
    `start`-th step of the reach to the grasp (the hand open, over and down to the object) the
    executed action closes the hand, for `steps` steps, whoever drives; the labels stay the
    expert's. A learner that closes too early (on nothing, then hovers closed 17-24 cm up) almost
    never sees that state in data driven by the expert or by itself: 2% of stage 8's closed-hand
    steps carried an "open" label, nearly all at the release (policies/TRAINING.md). Drawn from
    the episode's seed, apart from the pilot's draws.
    """

    start: int
    steps: int

    @staticmethod
    def draw(seed: int, share: float) -> EarlyClose | None:
        rng = np.random.default_rng([seed, 12])
        if rng.random() >= share:
            return None
        return EarlyClose(start=int(rng.integers(5, 30)), steps=int(rng.integers(2, 7)))

    def closes(self, reach_step: int) -> bool:
        return self.start <= reach_step < self.start + self.steps


@dataclass(frozen=True, slots=True)
class EpisodeResult:
    trial: Trial
    kept: bool
    steps: int
    reason: str
    seconds: float
    success: bool = False
    #: no result: the episode's worker died on every try (`collect --ray`); counted in the
    #: store's "lost" and skipped, so a crash that repeats on one seed cannot stall collection
    lost: bool = False


@dataclass(frozen=True, slots=True)
class EpisodeParts:
    """What one episode runs on: the lockstep scene, the expert that labels every step (and
    drives without a pilot), the judge, a factory for the perception and the optional pilot."""

    scene: LockstepScene
    expert: ScriptedExpert
    judge: SimJudge
    new_pipeline: Callable[[], PerceptionPipeline]
    pilot: Policy | None = None


class EpisodeSink(Protocol):
    """Where `record_episode` writes: an `EpisodeStore`, or a `RecordedEpisode` that a Ray
    worker fills and the one writer replays into the store (`agent.collection_remote`)."""

    def begin_episode(self, info: Mapping[str, Any]) -> None: ...

    def add_step(
        self,
        rgb: np.ndarray,
        mask: np.ndarray,
        proprio: np.ndarray,
        action: np.ndarray,
        phase: int = 0,
    ) -> None: ...

    def end_episode(self, keep: bool = True, **extra: Any) -> bool: ...

    def abort_episode(self) -> None: ...


def target_positions(world: SceneState, task: TaskSpec) -> dict[str, list[float] | None]:
    """The pick object's and the place target's box centres as the episode starts (m, base
    frame; None for a role the task lacks): training may ask the network to predict them
    (`models.tpm.arrays.step_positions`), so that its trunks learn where the objects are and not
    only which way to move (the shipped policy's misses are 2.5-8 cm beside the object)."""

    def centre(name: str | None) -> list[float] | None:
        if name is None:
            return None
        low, high = world.object_bounds(name)
        return [round(float(v), 5) for v in (low + high) / 2]

    return {"pick": centre(task.pick), "place": centre(task.place)}


def record_episode(
    store: EpisodeSink,
    trial: Trial,
    settings: CollectSettings,
    new_pipeline: Callable[[], PerceptionPipeline],
    pilot: Policy | None = None,
) -> EpisodeResult:
    """Run one episode and commit it to `store`; the expert labels every step.

    Without a `pilot` the expert also drives, and only episodes the simulator judges successful
    are kept. With one (a policy, e.g. `OnnxTPMPolicy`) the pilot drives a share
    `1 - settings.expert_share` of the steps (DAgger): the recorded states are the ones the
    learner reaches, labelled with what the expert would do there, so the episode is kept
    whatever its outcome (the labels are right either way).
    """
    from drivers.sim import SceneSpec, ScriptedExpert, SimJudge
    from drivers.sim.rollout import LockstepScene

    t0 = time.monotonic()
    spec = SceneSpec(
        seed=trial.seed,
        objects=trial.objects,
        split=trial.split,
        setting=trial.setting,
        catalog=settings.catalog,
        backgrounds=settings.backgrounds,
        randomise=settings.randomise,
        image_width=settings.render_width,
        image_height=settings.render_height,
    )
    with LockstepScene.open(
        spec, settings.views, control_hz=settings.control_hz, max_step_m=settings.max_step_m
    ) as scene:
        parts = EpisodeParts(
            scene, ScriptedExpert(scene.world), SimJudge(scene.world), new_pipeline, pilot
        )
        return _record(store, trial, settings, parts, t0)


def _record(
    store: EpisodeSink,
    trial: Trial,
    settings: CollectSettings,
    parts: EpisodeParts,
    t0: float,
) -> EpisodeResult:
    """The episode itself (`record_episode`): one rollout, labelled step by step, then judged."""
    from drivers.sim.expert import PHASES, REACH
    from drivers.sim.rollout import perceiving, run_steps, settle_and_judge

    reach_codes = {PHASES.index(name) for name in REACH}  # as the expert's `info["phase"]`
    task = trial.task()
    scene, pilot = parts.scene, parts.pilot
    early = EarlyClose.draw(trial.seed, settings.early_close)
    layout = scene.world.layout
    store.begin_episode(
        {
            **trial.info(),
            "background": layout.background,
            "look": layout.look.record(),  # the drawn table, wall, lights, camera offsets
            "distractors": layout.distractors,
            "scene_objects": layout.names,
            "pilot": getattr(pilot, "name", None) if pilot is not None else "expert",
            "expert_share": settings.expert_share if pilot is not None else 1.0,
            "latency_ms": 1000.0 * settings.latency_s,
            "early_close": [early.start, early.steps] if early is not None else None,
            "positions": target_positions(scene.world, task),
        }
    )
    rng = np.random.default_rng([trial.seed, 11])
    failed = False
    why_failed = "expert gave up"
    reach_steps = 0

    def decide(percept: Percept, state: RobotState) -> ActionLike | None:
        """The expert's label, recorded with the step's views; then who drives (DAgger)."""
        nonlocal failed, reach_steps
        action = parts.expert.act(None)
        if action.done:
            failed = bool(action.info.get("failed", 0.0))
            return None
        rgb, mask = prepare_views(
            percept.images, percept.masks, settings.views, settings.policy_size
        )
        seen = observation(percept.images, percept.masks, state)
        move = np.asarray(action.move, dtype=np.float32)
        phase = int(action.info.get("phase", 0))
        store.add_step(
            rgb,
            mask,
            seen.proprio,
            np.array([*move, float(action.gripper_closed)], dtype=np.float32),
            phase=phase,
        )
        driven: ActionLike = action
        if pilot is not None and rng.random() >= settings.expert_share:
            driven = pilot.act(seen)
        if early is not None and phase in reach_codes:
            reach_steps += 1
            if early.closes(reach_steps - 1):
                return Action(move=np.asarray(driven.move), gripper_closed=True)
        return driven

    def judged_done() -> bool:
        # with a pilot, the episode ends on the judge's verdict, as the runtime's supervisor does
        return parts.judge.verdict(task).done

    try:
        parts.expert.reset(task)
        if pilot is not None:
            pilot.reset(task)
        observe = perceiving(parts.new_pipeline(), task, scene.render)
        lag = scene.physics_steps(settings.latency_s)
        ended = run_steps(
            observe,
            decide,
            scene.robot,
            max_steps=settings.max_steps,
            before_move=lambda: scene.world.step(lag),
            advance=lambda: scene.world.step(scene.control_steps - lag),
            until=judged_done if pilot is not None else None,
        )
        if ended.budget_used:
            failed = True
            why_failed = f"step budget ({settings.max_steps}) used"
        verdict = settle_and_judge(scene.world, parts.judge, task)
        success = verdict.success and not failed
        reason = verdict.reason if not failed else f"{why_failed} ({verdict.reason})"
        keep = success or pilot is not None
        kept = store.end_episode(keep=keep, success=success, reason=reason)
    except BaseException:
        # an exception (not a kill) mid-episode: say so in the dataset, keep nothing of it
        store.abort_episode()
        raise
    return EpisodeResult(trial, kept, ended.moves, reason, time.monotonic() - t0, success)


def next_episode_index(store: EpisodeStore) -> int:
    """The index the next episode's seed takes: after every episode the store ever started."""
    attrs = store.attrs
    started = ("discarded", "incomplete", "lost")
    return store.n_episodes + sum(int(attrs.get(key, 0)) for key in started)


def plan_trials(store: EpisodeStore, settings: CollectSettings, catalog: Catalog) -> list[Trial]:
    """The next `settings.episodes` trials for `store`: seeds after every episode it started,
    none in the held-out ranges (SeedRangeError before anything is recorded)."""
    start = next_episode_index(store)
    check_collection_seeds(settings.seed, start, settings.episodes)
    return [
        draw_trial(
            catalog,
            episode_seed(settings.seed, start + i),
            split=settings.split,
            setting=settings.setting,
        )
        for i in range(settings.episodes)
    ]


def collect(
    store: EpisodeStore,
    settings: CollectSettings,
    new_pipeline: Callable[[], PerceptionPipeline],
    catalog: Catalog,
    pilot: Policy | None = None,
) -> Iterator[EpisodeResult]:
    """Record `settings.episodes` episodes, appending to `store`; yields each result.

    Seeds continue after the episodes the store already holds (committed or discarded), so
    re-running the same command appends new scenes instead of repeating old ones. Seeds in the
    held-out ranges (`agent.seeds`: validation and evaluation) are refused (SeedRangeError)
    before anything is recorded.
    """
    for trial in plan_trials(store, settings, catalog):
        result = record_episode(store, trial, settings, new_pipeline, pilot)
        if not result.success:
            store.bump("expert_failures" if pilot is None else "pilot_failures")
        yield result
