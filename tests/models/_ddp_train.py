"""Train the tests' tiny TPM network as one rank of a torchrun job (tests/models/test_tpm_ddp.py).

The tiny network exists only in the tests (`TINY`), so this stands in for `python -m agent
train`'s argument parsing; the Trainer, the process group and DDP are the real ones.

    torchrun --standalone --nproc-per-node 2 tests/models/_ddp_train.py DATA OUT EPOCHS BATCH
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from models.tpm import distributed
from models.tpm.train import Trainer
from models.tpm.train_settings import TrainSettings
from tests.models.test_tpm_pipeline import TINY


def main() -> None:
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    epochs, batch = int(sys.argv[3]), int(sys.argv[4])
    dist = distributed.from_env()
    try:
        settings = TrainSettings(
            epochs=epochs, batch_size=batch, val_fraction=0.25, log_every=2, threads=1
        )
        trainer = Trainer(data, out, settings, config=TINY, dist=dist)
        t0 = time.monotonic()
        result = trainer.run()
        if dist.main:
            rate = {"steps": result["steps"], "seconds": time.monotonic() - t0}
            (out / "rate.json").write_text(json.dumps(rate))
    finally:
        distributed.stop(dist)


if __name__ == "__main__":
    main()
