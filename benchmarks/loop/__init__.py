"""The whole control loop: the pipelined runtime against a plain sequential loop, same backends.

The paper measured modules (Table IV), never the loop that chains them. This benchmark runs the
real `Runtime` in the sim world for a fixed number of control steps with the configured models,
then the same backends (built by the same `agent.backends.build_parts`) in the shape of the
paper's released ROS loop: capture, perceive, act, command, one after another, as fast as they
go. Both print side by side, with their ratio and how close each gets to its bound:

- pipelined: 1 / (slowest stage), where the camera period and the command loop's period
  (`runtime.control_hz`) count as stages, since neither can run faster than it is clocked;
- sequential: 1 / (sum of stages: render + perceive + act + command). The sequential loop also
  waits for the next camera frame, so it can fall short of this bound by up to a frame period;
  the cameras stream on their own threads (as real ones do), so it can also beat it a little.

What is reported per mode: achieved control rate (executed or refused steps per second between
the first and the last step), capture-to-command latency (from the oldest view's capture to the
command being sent), command-loop jitter (how late each tick of the fixed-rate loop starts; the
sequential loop has no clock, so its step-interval spread stands in), stale actions (refused by
the deadline; in the sequential loop: would have been), frames dropped per channel, the wall time
of each stage per call, and the CPU each stage used.

CPU accounting (documented choice): each stage's backend calls are wrapped (`Meter`) and measure
`time.thread_time()` inside the worker thread that runs them, so a stage's CPU is its own and not
the time it waited for the GIL or a core; the camera render threads and the sim physics thread
are read through their POSIX thread CPU clocks, and Mesa's llvmpipe rasteriser threads (native,
named "llvmpipe-N") through /proc (Linux; 10 ms resolution). The runtime's own overhead
(scheduling, channels, events, telemetry) is the CPU of the event loop's thread, which runs
everything but the stages; per step it is the cost of the runtime itself. Shares are of the
process's CPU over the window from the first to the last step.

    python -m agent bench loop [--steps 100] [--quick] [--json PATH] [--set models.tracker=csrt]
    python -m benchmarks.loop  (the same arguments, with the sim profile)
"""

# Layout: `meters` (per-stage meters and CPU snapshots), `runs` (the two loops, `LoopResult`,
# bounds and timelines), `report` (the report and the timeline plot), `cli` (the command line).
# Its public face is the command (`python -m agent bench` loads `add_arguments` and `run`);
# tests and other code import the parts from the modules above.

from benchmarks.loop.cli import add_arguments, main, run

__all__ = ["add_arguments", "main", "run"]
