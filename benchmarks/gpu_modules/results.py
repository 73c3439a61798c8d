"""The GPU table's output: its caption, the markdown table, the result files, and merging a
run's rows into an earlier result (`--merge`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.gpu_modules.networks import REGISTRY
from benchmarks.gpu_modules.variants import one_line
from benchmarks.machine import describe, markdown_table
from benchmarks.table4 import WEIGHTS_NOTE, Keyed, Row


def caption(info: dict[str, Any], gpu: dict[str, Any] | None, device: str) -> str:
    if device.startswith("cuda"):
        gpu = gpu or {}
        tf32 = gpu.get("tf32")
        state = {True: "on", False: "off"}
        tf32_text = (
            f"TF32 matmul {state[tf32['matmul']]}, cuDNN {state[tf32['cudnn']]}"
            if tf32
            else "TF32 as torch defaults"
        )
        where = (
            f"{gpu.get('name', info.get('gpu') or 'a GPU')} (driver {gpu.get('driver')}, CUDA "
            f"{gpu.get('cuda')}, cuDNN {gpu.get('cudnn')}, torch {gpu.get('torch')}); host "
            f"{describe(info)}"
        )
        how = (
            f"fp16 = torch.autocast(float16), fp32 with {tf32_text}; CUDA graph = one call "
            "captured with torch.cuda.CUDAGraph and replayed; compile = the fp16 call through "
            "torch.compile(mode='reduce-overhead'); SDPA attention = SAM's image-encoder "
            "attention through torch.nn.functional.scaled_dot_product_attention with the "
            "relative-position terms as an additive mask (models.segmentation.sam_attention, "
            "the runtime's sam.fast_attention); cudnn.benchmark on"
        )
    else:
        threads = (gpu or {}).get("threads", 1)
        where = f"{describe(info)}, {threads} torch thread(s), torch {(gpu or {}).get('torch')}"
        how = "bf16 = torch.autocast(bfloat16) on the CPU; CUDA graph and compile rows need CUDA"
    return (
        f"Latency per call in ms, batch 1, on {where}. Each sample is one call followed by a "
        f"device synchronise, inputs already on the device, after warm-up; the networks alone "
        f"(the CPU table, benchmarks/results/modules-cpu.md, times the runtime's calls). {how}. "
        f"{WEIGHTS_NOTE}. Paper: Table IV, on an NVIDIA GPU; speed-up = paper / our median."
    )


def _speedup(row: Row) -> str:
    return f"{row.speedup:g}x" if row.speedup is not None else ""


def format_table(rows: Sequence[Row]) -> str:
    columns = ["family", "module", "variant", "engine", "input", "runs", "median", "p90", "p99"]
    columns += ["min", "max", "paper (GPU)", "speed-up vs paper", "note"]
    return markdown_table(
        columns,
        (
            [r.family, r.module, r.variant, *r.timing_cells(), r.paper_cell, _speedup(r), r.note]
            for r in rows
        ),
    )


def merge_results(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`base` with its rows of every module that `new` has rows of replaced by `new`'s.

    Rows stay grouped by module in registry order; the caption is `base`'s machine and device
    with today's wording, plus a sentence per merge saying which modules come from which run
    (also kept in the document's `merged` list). Raises ValueError (one line) when the two
    were measured on different devices.
    """
    where = [(doc.get("device") or {}).get(k) for doc in (base, new) for k in ("device", "name")]
    if where[:2] != where[2:]:
        raise ValueError(f"the results are from different devices: {where[:2]} and {where[2:]}")
    known = {e.key for e in REGISTRY}
    keys = sorted({r["key"] for r in new["rows"] if r["key"] in known})
    rows = [Row.from_dict(r) for r in base["rows"] if r["key"] not in keys]
    rows += [Row.from_dict(r) for r in new["rows"] if r["key"] in keys]
    merged = [
        *base.get("merged", []),
        {
            "keys": keys,
            "partial": new.get("partial", False),
            "duration_s": new.get("duration_s"),
            "device": new.get("device"),
            "machine": new.get("machine"),
            "settings": new.get("settings"),
        },
    ]
    device = (base.get("device") or {}).get("device", "cuda")
    text = caption(base["machine"], base.get("device"), device)
    for m in merged:
        torch_version = (m.get("device") or {}).get("torch")
        partial_note = ", stopped early" if m.get("partial") else ""
        text += (
            f" Rows of {', '.join(m['keys'])}: a later run (torch {torch_version}, "
            f"{m.get('duration_s')} s{partial_note}), merged in with --merge."
        )
    return {
        **base,
        "caption": text,
        "merged": merged,
        "rows": [asdict(r) for r in ordered(rows, REGISTRY)],
    }


def merge_into(path: Path, new: dict[str, Any], out: Any) -> int:
    try:
        merged = merge_results(json.loads(path.read_text()), new)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: cannot merge into {path}: {one_line(exc)}", file=sys.stderr)
        return 2
    write_results(path, path.with_suffix(".md"), merged)
    print(f"merged {', '.join(merged['merged'][-1]['keys'])} into {path}", file=out)
    return 0


def write_results(json_path: Path | None, md_path: Path | None, result: dict[str, Any]) -> str:
    """Write the JSON and the captioned table where asked; returns the table."""
    table = format_table([Row.from_dict(r) for r in result["rows"]])
    note = " (partial: the run is still going or was stopped)" if result.get("partial") else ""
    for path, text in (
        (json_path, json.dumps(result, indent=2) + "\n"),
        (md_path, f"{result['caption']}{note}\n\n{table}\n"),
    ):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return table


def ordered(rows: list[Row], entries: Sequence[Keyed]) -> list[Row]:
    """Rows grouped by module in registry order (the compile pass's rows join their module)."""
    order = {e.key: i for i, e in enumerate(entries)}
    return sorted(rows, key=lambda r: order.get(r.key, len(order)))  # stable within a module
