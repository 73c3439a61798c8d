"""Table IV's per-module latencies on a GPU, the networks alone, beside the paper's figures.

The companion of `benchmarks.modules` (the CPU table, measured through the runtime's backends):
here each module's network is timed on its own, with random weights, batch 1, inputs already on
the device, in PyTorch fp32 and fp16 (autocast) eager, replayed as a CUDA graph, and (for the
small networks) compiled with torch.compile. The stand-ins are the CPU table's
(`models.*.standin`): Grounding DINO Swin-B / Swin-T with a BERT-base-sized random text encoder
at an 800x800 input, SAM ViT-B and MobileSAM (encoder at 1024x1024, prompt encoder + mask decoder
with one and two boxes), the ONNX tracker's MixFormerV2-S-sized ViT (in PyTorch: ONNX Runtime on
the GPU machine is the CPU-only build) and the TPM `paper` preset with two 224x224 views.

SAM ViT-B also runs with its image encoder's attention through scaled_dot_product_attention
(`models.segmentation.sam_attention`, the runtime's `sam.fast_attention`): fp32 / fp16 / bf16
eager, fp16 CUDA graph (the package's own attention cannot be captured: it copies a CPU index
tensor each call) and fp16 torch.compile; the decoder rows of those variants are the unchanged
decoder in the same precision and mode, so that the per-frame sum is one way of running SAM.

Measurement: per (network, variant) warm-up calls, then timed calls until `runs` or the variant's
time budget, never fewer than `min_runs`; each sample is the wall time of one call followed by
`torch.cuda.synchronize()`. Median, p90, p99, min, max.

Isolation and time: every module runs in a child process of its own with a hard time budget (the
child is killed when it runs over), so a hung compile or a crashed CUDA context costs one module's
rows, not the table; a variant that fails becomes an error row with one line saying why. The
torch.compile variants run last, in a second pass, with whatever is left of the run's total
budget (`--total`), so that every module's eager and graph rows come first.

    python -m benchmarks.gpu_modules --json OUT.json --md OUT.md        # on a CUDA machine
    python -m benchmarks.gpu_modules --device cpu --quick --only policy  # smoke run, 1 thread
    python -m benchmarks.gpu_modules --only segmenter/sam_vit_b --json SAM.json --merge ALL.json

`--merge ALL.json` puts the run's rows into an earlier result (rows of the same modules replaced,
ALL.json and ALL.md rewritten); with `--from SAM.json` it merges an existing result, no run.
`--quick` on the CPU builds SAM ViT-B at a smoke-test size (`models.segmentation.standin`'s
`tiny_sam`, same classes).
"""

# Layout: `variants` (the ways of running a network, the registry's types), `networks` (the
# modules' builders and `REGISTRY`), `child` (build and time one module), `parent` (the time-boxed
# children, the result document), `results` (caption, table, files, `--merge`), `cli` (the command
# line of both).
# Its public face is the command; tests and other code import the parts from the modules above.

from benchmarks.gpu_modules.cli import main

__all__ = ["main"]
