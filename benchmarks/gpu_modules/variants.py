"""The GPU table's vocabulary: the ways a network is run (variants), what a module's builder
returns, and the registry's entry; shared by the parent process and its children.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

FP32, FP16, GRAPH32, GRAPH16, COMPILE = "fp32", "fp16", "graph-fp32", "graph-fp16", "compile"


#: the same with SAM's image-encoder attention through scaled_dot_product_attention
SDPA16, SDPA_GRAPH16, SDPA32, SDPA_BF16 = "sdpa-fp16", "sdpa-graph-fp16", "sdpa-fp32", "sdpa-bf16"


SDPA_COMPILE = "sdpa-compile"


_SDPA = ", SDPA attention"


VARIANTS: dict[str, str] = {
    FP32: "fp32 eager",
    FP16: "fp16 autocast eager",
    GRAPH32: "fp32 CUDA graph",
    GRAPH16: "fp16 CUDA graph",
    COMPILE: "fp16 torch.compile (reduce-overhead)",
    SDPA16: "fp16 autocast eager" + _SDPA,
    SDPA_GRAPH16: "fp16 CUDA graph" + _SDPA,
    SDPA32: "fp32 eager" + _SDPA,
    SDPA_BF16: "bf16 autocast eager" + _SDPA,
    SDPA_COMPILE: "fp16 torch.compile (reduce-overhead)" + _SDPA,
}


BASE_VARIANTS = (FP32, FP16, GRAPH32, GRAPH16)


#: the first pass's extra variants for entries with `sdpa` (the compile one runs in the second)
SDPA_VARIANTS = (SDPA16, SDPA_GRAPH16, SDPA32, SDPA_BF16)


SDPA = (*SDPA_VARIANTS, SDPA_COMPILE)


CUDA_ONLY = (GRAPH32, GRAPH16, COMPILE, SDPA_GRAPH16, SDPA_COMPILE)


GRAPHS = (GRAPH32, GRAPH16, SDPA_GRAPH16)


COMPILED = (COMPILE, SDPA_COMPILE)


#: autocast to the half type (float16 on CUDA; bfloat16 on the CPU, which has no fast fp16)
HALF = (FP16, GRAPH16, COMPILE, SDPA16, SDPA_GRAPH16, SDPA_COMPILE)


def one_line(exc: BaseException, limit: int = 240) -> str:
    """'<ExceptionType>: <first line>', cut to `limit`: an error row's note, a merge's error."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class Settings:
    """Per variant: warm-up calls, most timed runs, least runs, seconds of timed runs."""

    warmup: int = 5
    runs: int = 200
    min_runs: int = 10
    budget_s: float = 2.0

    @classmethod
    def quick(cls) -> Settings:
        return cls(warmup=1, runs=3, min_runs=2, budget_s=0.3)


@dataclass(frozen=True, slots=True)
class Target:
    """One timed network call: `call` runs it once on inputs already on the device."""

    name: str
    input: str
    call: Callable[[], object]
    paper: str | None = None
    note: str = ""
    #: the call in the SDPA variants (None: the target has no such rows), a note for those rows
    sdpa_call: Callable[[], object] | None = None
    sdpa_note: str = ""


@dataclass(frozen=True, slots=True)
class Derived:
    """A row summed from other targets' medians in the same variant (e.g. SAM per frame)."""

    name: str
    input: str
    parts: tuple[str, ...]
    paper: str | None = None
    note: str = ""


#: What a module's builder returns: its timed targets and the rows summed from them.
Built: TypeAlias = tuple[list[Target], list[Derived]]


@dataclass
class Context:
    """What builders get: torch, the device, and a folder shared by the run's children."""

    torch: Any
    device: str
    workdir: Path
    tiny: bool = False  # SAM ViT-B at a smoke-test size (--quick on the CPU)

    def tensor(self, *shape: int, uniform: bool = False) -> Any:
        make = self.torch.rand if uniform else self.torch.randn
        return make(*shape).to(self.device)


@dataclass(frozen=True, slots=True)
class Entry:
    """A module of the table; `build` returns its targets and derived rows, on the device."""

    key: str
    family: str
    build: Callable[[Context], Built]
    budget_s: float
    compile: bool = False
    compile_budget_s: float = 0.0
    paper: str | None = None
    sdpa: bool = False  # also the SDPA variants (SAM ViT-B's encoder attention)

    def variants(self, chosen: Sequence[str] | None) -> list[str]:
        """The first pass's variants of this entry: `chosen` (None: the defaults) that apply."""
        if chosen is None:
            chosen = BASE_VARIANTS + (SDPA_VARIANTS if self.sdpa else ())
        return [v for v in chosen if self.sdpa or v not in SDPA]

    def compile_variants(self, chosen: Sequence[str] | None) -> list[str]:
        """The compile pass's variants of this entry (those not already in the first pass)."""
        wanted = ([COMPILE] if self.compile else []) + ([SDPA_COMPILE] if self.sdpa else [])
        return [v for v in wanted if v not in (chosen or ())]
