"""The policy role: an Observation -> the next Action, beside its learned implementation.

`OnnxTPMPolicy` (`onnx_policy.py`, this package) is the product's policy. The simulator's
scripted expert (`drivers.sim.expert.ScriptedExpert`) satisfies the protocol structurally but
stays with the simulator: it reads privileged world state, and drivers never import models.
"""

from __future__ import annotations

from typing import Protocol

from models.types import ActionLike, Observation, TaskSpec


class Policy(Protocol):
    """`name`, `reset` and `act` are required.

    Optional: `skills`, a set of the skill strings (`Skill` values, e.g. {"place_near"}) the
    policy can carry out. When a policy declares it, the runtime ends an episode whose task needs
    another skill as "infeasible" right after reasoning, before any detection or motion; a policy
    without it is trusted with every skill. (Not a protocol member, so policies may omit it.)
    """

    name: str

    def reset(self, task: TaskSpec) -> None:
        """Start a new episode for `task`."""
        ...

    def act(self, observation: Observation) -> ActionLike: ...
