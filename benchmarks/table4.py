"""What both module-latency benchmarks share: the paper's Table IV, the row and its cells.

`benchmarks.modules` (the CPU table, measured through the runtime's backends) and
`benchmarks.gpu_modules` (the GPU table, the networks alone) report the same kind of row beside
the same paper figures. Their random-weight stand-in networks live beside the backends they stand
in for (`models.tracking.standin`, `models.detection.standin`, `models.segmentation.standin`).
This module imports only the standard library and numpy: the GPU benchmark's children run it on
a bare GPU image without the runtime's own dependencies (pydantic, structlog, MuJoCo).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol, TypeVar

#: Table IV of the paper: inference time (ms) per module, on an NVIDIA GPU.
PAPER_MS: dict[str, float] = {
    "GroundingDINO-B": 148.6,
    "MixFormer-B": 103.4,
    "MixFormerV2-S": 17.0,
    "SAM-B": 18.2,
    "SAM-T": 10.1,
    "TPM": 34.8,
}

WEIGHTS_NOTE = (
    "random weights (no checkpoints here): latency depends on the architecture and input size, "
    "not on the weights"
)

#: The phrases of the task both tables time (apple into bowl: benchmarks.tracking_iou's
#: EPISODES[1]); they set Grounding DINO's caption and the stand-in BERT's vocabulary.
TASK_PHRASES: tuple[str, str] = ("apple", "bowl")


@dataclass
class Row:
    """One table row: a module (in a `variant` of running it, GPU table only) and its latency.

    `status`: ok | derived (summed from other rows' medians) | skipped | n/a | error | timeout.
    `speedup` is the paper's median over ours (GPU table only).
    """

    key: str
    family: str
    module: str
    variant: str = ""
    engine: str = ""
    input: str = ""
    status: str = "ok"
    count: int = 0
    median: float | None = None
    p90: float | None = None
    p99: float | None = None
    min: float | None = None
    max: float | None = None
    paper: str | None = None
    paper_ms: float | None = None
    speedup: float | None = None
    note: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        """A row from its JSON (keys this class does not have are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self, omit: Sequence[str] = ()) -> dict[str, Any]:
        """The row's JSON, without the `omit` fields (those a table does not have)."""
        return {k: v for k, v in asdict(self).items() if k not in omit}

    def set_stats(self, samples: Sequence[float], digits: int) -> None:
        """count, median, p90, p99, min and max of `samples` (ms), rounded to `digits`."""
        for name, value in stats(samples, digits).items():
            setattr(self, name, value)

    @property
    def paper_cell(self) -> str:
        """'<paper module> <ms>' where the paper has the module, else empty."""
        return f"{self.paper} {self.paper_ms:g}" if self.paper and self.paper_ms is not None else ""


class Keyed(Protocol):
    """What a table entry of either benchmark has: its key, family and paper module."""

    @property
    def key(self) -> str: ...
    @property
    def family(self) -> str: ...
    @property
    def paper(self) -> str | None: ...


E = TypeVar("E", bound=Keyed)


def entry_row(entry: Keyed, status: str, note: str, variant: str = "") -> Row:
    """The row of an entry that has no number (unavailable, failed, skipped), named by its key."""
    return Row(
        key=entry.key,
        family=entry.family,
        module=entry.key.split("/", 1)[1],
        variant=variant,
        status=status,
        paper=entry.paper,
        paper_ms=PAPER_MS.get(entry.paper) if entry.paper else None,
        note=note,
    )


def stats(samples: Sequence[float], digits: int) -> dict[str, Any]:
    """count, median, p90, p99, min and max of milliseconds (empty: count 0, the rest None)."""
    import numpy as np

    if not samples:
        return {"count": 0, "median": None, "p90": None, "p99": None, "min": None, "max": None}
    values = np.asarray(samples, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    found = {"median": p50, "p90": p90, "p99": p99, "min": values.min(), "max": values.max()}
    return {"count": int(values.size), **{k: round(float(v), digits) for k, v in found.items()}}


def select_keys(entries: Sequence[E], only: Sequence[str]) -> list[E]:
    """Entries whose key contains one of `only` (all of them if `only` is empty)."""
    return [e for e in entries if not only or any(o in e.key for o in only)]


def million_params(model: Any) -> float:
    """A torch module's parameter count, in millions."""
    return float(sum(p.numel() for p in model.parameters()) / 1e6)


def markdown_row(cells: Sequence[object]) -> str:
    """One markdown table line; a '|' inside a cell becomes '/'."""
    return "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"
