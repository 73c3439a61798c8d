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

from benchmarks.machine import ms_cell

#: Table IV of the paper: inference time (ms) per module, on an NVIDIA GPU.
PAPER_MS: dict[str, float] = {
    "GroundingDINO-B": 148.6,
    "MixFormer-B": 103.4,
    "MixFormerV2-S": 17.0,
    "SAM-B": 18.2,
    "SAM-T": 10.1,
    "TPM": 34.8,
}

#: Which of our modules stands beside which module of the paper's Table IV, by key
#: ("family/name", the same in both tables): the one registry of that pairing.
PAPER_MODULE: dict[str, str] = {
    "detector/grounding_dino_swinb": "GroundingDINO-B",
    "tracker/onnx": "MixFormerV2-S",
    "tracker/mixformer_b": "MixFormer-B",
    "segmenter/sam_vit_b": "SAM-B",
    "segmenter/mobile_sam": "SAM-T",
    "policy/tpm_paper": "TPM",
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

    def timing_cells(self) -> list[str]:
        """engine, input, runs, median, p90, p99, min and max as table cells; a row without a
        number shows its status in the median's place."""
        if self.status not in ("ok", "derived"):
            return ["", "", "", self.status, "", "", "", ""]
        runs = "derived" if self.status == "derived" else str(self.count)
        stats = (self.median, self.p90, self.p99, self.min, self.max)
        if self.status == "derived":  # a sum of medians has no spread
            stats = (self.median, None, None, None, None)
        return [self.engine, self.input, runs, *(ms_cell(v) for v in stats)]

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


def identity(key: str) -> dict[str, Any]:
    """An entry's family (the key's first part) and paper module (`PAPER_MODULE`), as keywords
    for either table's `Entry`."""
    return {"family": key.split("/", 1)[0], "paper": PAPER_MODULE.get(key)}


def module_row(entry: Keyed, module: str, paper: str | None, **more: Any) -> Row:
    """A row of `entry` (one of its modules' calls), beside the `paper` module's figure if any;
    `more`: the other fields (engine, input, variant, note, ...)."""
    paper_ms = PAPER_MS.get(paper) if paper else None
    return Row(
        key=entry.key, family=entry.family, module=module, paper=paper, paper_ms=paper_ms, **more
    )


def entry_row(entry: Keyed, status: str, note: str, variant: str = "") -> Row:
    """The row of an entry that has no number (unavailable, failed, skipped), named by its key."""
    module = entry.key.split("/", 1)[1]
    return module_row(entry, module, entry.paper, status=status, note=note, variant=variant)


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
