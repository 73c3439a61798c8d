"""Export a trained TPM network to ONNX and prove the file computes what PyTorch computes.

The exported graph takes what the runtime has at hand and returns what the robot needs:

    rgb      (1, V, S, S, 3) uint8    the views, already resized (`prepare_views`)
    mask     (1, V, S, S)    float32  role masks (`models.types.MASK_CODING`: the place value
                                      says the skill)
    proprio  (1, 4)          float32  [x, y, z, gripper_closed]
    -> move (1, 3) float32 metres, gripper_logits (1, 2) float32 (index 1 = closed)

Image normalisation, proprioception standardisation and the move's de-standardisation are inside
the graph, so the dataset statistics travel with the file and cannot be mismatched. The legacy
TorchScript exporter is used: it writes opset 17 as one file (the dynamo exporter emits opset 18
with external data, FINDINGS). The network config, the training record and the mask coding
(`mask_coding`, read back by `OnnxTPMPolicy`, which refuses a coding it does not paint) are
stored as metadata.

Parity: ONNX Runtime (CPU provider) against PyTorch on real dataset samples; the export fails
unless every standardised move and logit is within `ATOL + RTOL * |torch|` and every gripper
decision agrees.
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.tpm.arrays import step_role_values
from models.tpm.checkpoint import CheckpointError, Normaliser, load_checkpoint
from models.tpm.dataset import EpisodeStore
from models.tpm.mask_codes import decode_mask
from models.tpm.network import TPMNet, decode_move, normalise_inputs
from models.types import MASK_CODING

ATOL = 1e-4
RTOL = 1e-3
INPUTS = ("rgb", "mask", "proprio")
OUTPUTS = ("move", "gripper_logits")


class ExportError(RuntimeError):
    """The exported file does not reproduce the network (parity check failed)."""


class OutputExistsError(ValueError):
    """`export --out` names a file that exists (the shipped policy, by default) without --force."""


class PolicyGraph(nn.Module):
    """TPMNet plus input normalisation and output de-standardisation (what ONNX holds)."""

    # the normaliser's statistics, registered as buffers (they travel with the graph)
    move_mean: torch.Tensor
    move_std: torch.Tensor
    proprio_mean: torch.Tensor
    proprio_std: torch.Tensor

    def __init__(self, net: TPMNet, normaliser: Normaliser) -> None:
        super().__init__()
        self.net = net
        for name, value in normaliser.tensors(torch.device("cpu")).items():
            self.register_buffer(name, value)

    def forward(
        self, rgb: torch.Tensor, mask: torch.Tensor, proprio: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images, masks = normalise_inputs(rgb, mask)
        p = (proprio - self.proprio_mean) / self.proprio_std
        head, logits = self.net(images, masks, p)
        return decode_move(self.net, head) * self.move_std + self.move_mean, logits


@dataclass(frozen=True)
class ExportReport:
    path: Path
    size_mb: float
    samples: int
    max_abs_move_m: float
    max_abs_logit: float
    gripper_agree: float

    def line(self) -> str:
        return (
            f"wrote {self.path} ({self.size_mb:.1f} MB); ONNX Runtime vs PyTorch on "
            f"{self.samples} dataset samples: max |move| diff {self.max_abs_move_m:.2e} m, "
            f"max |logit| diff {self.max_abs_logit:.2e}, gripper agreement "
            f"{100 * self.gripper_agree:.0f}% (tolerance {ATOL:g} + {RTOL:g} x |value|)"
        )


def export_onnx(
    checkpoint: Path,
    out: Path,
    data: Path,
    *,
    samples: int = 32,
    opset: int = 17,
) -> ExportReport:
    """Write `out` from `checkpoint` and check it on `samples` steps of the dataset `data`."""
    torch.set_num_threads(1)
    net, normaliser, ckpt = load_checkpoint(checkpoint)
    graph = PolicyGraph(net, normaliser).eval()
    config = net.config
    batch = _dataset_samples(data, config.views, config.image_size, samples, config.mask_mode)
    report = write_checked(graph, batch, out, ckpt, opset)
    return ExportReport(out, out.stat().st_size / 1e6, *report)


def write_checked(
    graph: PolicyGraph,
    batch: dict[str, np.ndarray],
    out: Path,
    ckpt: dict[str, Any],
    opset: int = 17,
) -> tuple[int, float, float, float]:
    """`graph` written to `out` through a temporary file that replaces `out` only once
    `check_parity` on `batch` passed (an existing policy is never left half-written or wrong).
    Returns `check_parity`'s numbers."""
    example = tuple(torch.from_numpy(batch[k][:1]) for k in INPUTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    write_policy_onnx(graph, example, tmp, ckpt, opset)
    try:
        report = check_parity(graph, tmp, batch)
    except ExportError:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
    return report


def write_policy_onnx(
    graph: PolicyGraph,
    example: tuple[torch.Tensor, ...],
    path: Path,
    ckpt: dict[str, Any],
    opset: int = 17,
) -> None:
    """Trace `graph` to `path` (dynamic batch) with the metadata OnnxTPMPolicy reads.

    `ckpt` needs "config" (the TPMConfig as a dict); its training fields are optional. The
    latency benchmark writes random-weight networks through here, the same path as `export`.
    """
    # the fused inference path of TransformerEncoderLayer has no ONNX symbolic: trace the plain one
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        _trace(graph, example, path, opset)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    _add_metadata(path, ckpt)


def _trace(graph: PolicyGraph, example: tuple[torch.Tensor, ...], path: Path, opset: int) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        # constants built from Python tuples are meant to be constants in the graph
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # the legacy exporter is the one that writes opset 17 as one file (module docstring)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            graph,
            example,
            str(path),
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            opset_version=opset,
            dynamo=False,
            dynamic_axes={name: {0: "batch"} for name in (*INPUTS, *OUTPUTS)},
        )


def _dataset_samples(
    data: Path, views: tuple[str, ...], size: int, n: int, mask_mode: str
) -> dict[str, np.ndarray]:
    from models.tpm.mask_codes import masks_to_boxes

    store = EpisodeStore(data, read_only=True)
    if store.image_size != size or not set(views) <= set(store.views):
        raise ExportError(f"{data} holds {store.views} at {store.image_size} px; need {views}")
    if store.n_steps == 0:
        raise ExportError(f"{data} holds no steps to check the export on")
    idx = np.linspace(0, store.n_steps - 1, num=min(n, store.n_steps)).astype(int)
    keep = [store.views.index(v) for v in views]
    codes = store.array("mask")[idx][:, keep]
    if mask_mode == "box":
        codes = masks_to_boxes(codes)
    return {
        "rgb": np.ascontiguousarray(store.array("rgb")[idx][:, keep]),
        "mask": decode_mask(codes, step_role_values(store)[idx]),
        "proprio": store.array("proprio")[idx],
    }


def _add_metadata(path: Path, ckpt: dict[str, Any]) -> None:
    import onnx

    model = onnx.load(str(path))
    meta = {
        "tpm_config": json.dumps(ckpt["config"], sort_keys=True),
        "tpm_training": json.dumps(
            {
                "settings": ckpt.get("settings"),
                "data": ckpt.get("data"),
                "steps": ckpt.get("step"),
                "epochs": ckpt.get("epoch"),
                "best_val_loss": ckpt.get("best"),
                "elapsed_s": ckpt.get("elapsed_s"),
            },
            sort_keys=True,
            default=str,
        ),
        # the coding the dataset was decoded with in training (`models.tpm.arrays`); a
        # checkpoint that records its own (`mask_coding`) wins
        "mask_coding": ckpt.get("mask_coding") or MASK_CODING.to_json(),
    }
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def cpu_session(path: Path) -> Any:
    """An ONNX Runtime session on one CPU thread: the reference that parity checks run on."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_parity(
    graph: PolicyGraph, path: Path, batch: dict[str, np.ndarray]
) -> tuple[int, float, float, float]:
    """ONNX Runtime on `path` against `graph` on each sample of `batch`, one at a time;
    ExportError unless they agree (the module's docstring). Returns (samples, max move
    difference in m, max logit difference, gripper agreement)."""
    session = cpu_session(path)
    n = len(batch["proprio"])
    moves, logits, ref_moves, ref_logits = [], [], [], []
    with torch.no_grad():
        for i in range(n):  # batch 1, as the policy runs
            feed = {k: batch[k][i : i + 1] for k in INPUTS}
            move, logit = session.run(list(OUTPUTS), feed)
            ref_move, ref_logit = graph(*(torch.from_numpy(feed[k]) for k in INPUTS))
            moves.append(move)
            logits.append(logit)
            ref_moves.append(ref_move.numpy())
            ref_logits.append(ref_logit.numpy())
    m, lg = np.concatenate(moves), np.concatenate(logits)
    rm, rl = np.concatenate(ref_moves), np.concatenate(ref_logits)
    std = graph.move_std.numpy()
    move_ok = np.abs(m - rm) / std <= ATOL + RTOL * np.abs(rm / std)
    logit_ok = np.abs(lg - rl) <= ATOL + RTOL * np.abs(rl)
    agree = float(np.mean(lg.argmax(1) == rl.argmax(1)))
    if not (move_ok.all() and logit_ok.all() and agree == 1.0):
        raise ExportError(
            f"ONNX Runtime disagrees with PyTorch: max |move| diff {np.abs(m - rm).max():.2e} m, "
            f"max |logit| diff {np.abs(lg - rl).max():.2e}, gripper agreement {agree:.2%}"
        )
    return n, float(np.abs(m - rm).max()), float(np.abs(lg - rl).max()), agree


def check_out(out: Path, *, force: bool) -> None:
    """OutputExistsError for an --out that is a folder, or a file that exists without --force:
    before any work, so a refused command leaves nothing behind."""
    if out.is_dir():
        raise OutputExistsError(f"--out {out} is a folder; name the ONNX file to write")
    if out.exists() and not force:
        raise OutputExistsError(
            f"{out} exists; pass --force to replace it (or choose another --out)"
        )


def run_export(args: Any) -> int:
    """`python -m agent export`: refuses to replace an existing --out without --force."""
    check_out(args.out, force=getattr(args, "force", False))
    if not args.checkpoint.exists():
        raise CheckpointError(
            f"no checkpoint at {args.checkpoint} (run `python -m agent train` first)"
        )
    try:
        report = export_onnx(
            args.checkpoint, args.out, args.data, samples=args.samples, opset=args.opset
        )
    except ExportError as exc:
        print(f"error: export failed: {exc}", file=sys.stderr)
        return 1
    print(report.line())
    return 0
