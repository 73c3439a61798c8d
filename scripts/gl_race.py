"""Reproduce (or rule out) the llvmpipe fault that two GL contexts drawing at once trigger.

    python scripts/gl_race.py --threads 6 --seconds 600 --unserialised   # the old way: crashes
    python scripts/gl_race.py --threads 6 --seconds 600                  # through GL_LOCK

Each thread owns one renderer (its own GL context) of one sim scene and draws RGB, depth and
segmentation flat out through `ViewRenderer`, as `SimCamera` threads do. `--unserialised` swaps
`drivers.sim.render.GL_LOCK` for a no-op, so only the lock differs between the two modes. With
Debian bookworm's Mesa 22.3.6 on a 2-core AMD EPYC, 6 threads without the lock died of a general
protection fault in `swrast_dri.so` (offset 0x6e00dc, inside `lp_scene_is_resource_referenced`)
after ~7 minutes (drawn through `mujoco.Renderer` directly: the same GL calls, no lock);
see drivers/sim/render.py for why. The process exits 0 and prints the draws per thread when it
survives; a fault kills it with SIGSEGV (exit status 139 in a shell; `dmesg` names the offset).
Run it on a new Mesa, GPU driver or CPU before trusting a change to the lock.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("LP_NUM_THREADS", "0")  # as drivers.sim.render sets it

from drivers.sim import render
from drivers.sim.render import ViewRenderer
from drivers.sim.scene import SceneSpec
from drivers.sim.world import World

VIEWS = ("front", "side")


def _draw(world: World, view: str, size: int, until: float) -> int:
    renderer = ViewRenderer(world, view, size, size)
    draws = 0
    try:
        while time.monotonic() < until:
            renderer.render()
            draws += 1
    finally:
        renderer.close()
    return draws


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--size", type=int, default=64, help="image side, pixels")
    parser.add_argument("--unserialised", action="store_true", help="bypass GL_LOCK")
    args = parser.parse_args()
    if args.unserialised:  # the same draws as the cameras', without the lock
        render.GL_LOCK = contextlib.nullcontext()  # type: ignore[assignment]
    world = World.build(SceneSpec(seed=2, objects=["sponge", "bowl"]))
    until = time.monotonic() + args.seconds
    counts = [0] * args.threads

    def run(i: int) -> None:
        counts[i] = _draw(world, VIEWS[i % 2], args.size, until)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    world.close()
    mode = "unserialised" if args.unserialised else "through GL_LOCK"
    total = sum(counts)
    print(f"survived {args.seconds:g} s, {args.threads} threads {mode}; frames {total} {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
