"""The TPM policies shipped with tpm-agent, as package data: a wheel carries them.

`tpm_cpu.onnx` is the default policy (`[policy] onnx`), `variants/` holds the Table II ablation
variants, TRAINING.md says how each was made. Code finds them through `FOLDER`, never through a
path relative to the working directory or to the checkout, so an installed package (`pip install
.`, not editable) finds its own copy.
"""

from pathlib import Path

FOLDER = Path(__file__).resolve().parent
DEFAULT = FOLDER / "tpm_cpu.onnx"
