"""Per-module inference latency, after the paper's Table IV, with the paper's numbers beside ours.

Every row is measured on the backend objects the runtime itself builds (`agent.backends`:
`build_perception`, `build_tracker`, `build_reasoner`), called the way the perception pipeline
calls them, on frames rendered from the sim world at the configured camera size: a detector call
on one view, one tracker update of one object, one segmenter call on one view with the task's two
boxes, one reasoner request. Models with weights are built with random weights (no checkpoint can
be downloaded here), saved to a temporary file and loaded through the backend's own loading code:
latency depends on the architecture and the input size, not on the weights.

Measurement: warm-up calls first (lazy initialisation, allocator, caches), then timed calls until
`runs` or the row's time budget is reached, but never fewer than `min_runs`; median, p90, p99,
min and max of the wall time per call. Slow models (Grounding DINO and SAM ViT-B take seconds to
tens of seconds per call on a CPU) therefore get few runs, and the `runs` column says how many.
Threads are pinned (torch, ONNX Runtime and OpenCV) to `runtime.torch_threads` or `--threads`.

Rows come from `REGISTRY`: one `Entry` per module, whose builder returns the `Probe`s (timed
calls) of its rows. A module that cannot be measured here says why (`Unavailable`): a missing
extra, an unconfigured server, or the TPM policy that does not exist yet.

    python -m agent bench modules [--quick] [--no-heavy] [--only KEY] [--json PATH]
    python -m benchmarks.modules  (the same arguments, with the sim profile)
"""

# Layout: `core` (probes, entries, timing, rows, the table), `perception` (detector, tracker and
# segmenter rows), `registry` (reasoner and policy rows, `REGISTRY`), `cli` (the scene, the run,
# the command line). The random-weight networks are the backends' own stand-ins
# (`models.tracking.standin`, `models.detection.standin`).
# Its public face is the command (`python -m agent bench` loads `add_arguments` and `run`);
# tests and other code import the parts from the modules above.

from benchmarks.modules.cli import add_arguments, main, run

__all__ = ["add_arguments", "main", "run"]
