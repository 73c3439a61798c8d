"""Soak: one service runtime carries out many consecutive tasks; nothing is lost and nothing leaks.

The real service (`python -m agent serve`) is started on 127.0.0.1 in a subprocess with the sim
profile, the scripted expert, 64x64 images, a short step budget and video recording on. Tasks are
then submitted one after another over HTTP (`record: true`), a mix of requests the default scene
(a sponge and a milk carton) supports and one it cannot ("I'm cold": nothing fits, the reasoner's
language-model path). Each task's events are followed over server-sent events; every Nth task is
cancelled through `POST /tasks/{id}/cancel` after a few steps. The sim world is reset at the start
of every task (checked: each run's Started event says `world.reset`). After each task:

- the task has a terminal outcome (GET /tasks/{id} finished, with the outcome the Finished event
  carried); a task refused, never finished, or finished without an outcome counts as lost;
- its run folder is complete: config.json and summary.json parse, events.jsonl parses line by
  line from Started to Finished, the summary holds that outcome and no recording error, and the
  video is either absent (the summary names none, no file) or decodes to exactly the frame count
  the summary states;
- the server process is sampled from /proc: resident memory (VmRSS), open file descriptors,
  threads, and child processes (the video encoder is one; none may outlive its task).

At the end the task list holds no running task, /health answers, the runs folder holds exactly one
folder per task, and Ctrl-C (SIGINT) stops the service cleanly (exit 130).

The step budget (40 steps by default, `--steps`) keeps a task to a few seconds; the scripted
expert needs ~125 steps to finish, so a task that moves the arm ends in "failure" (budget used up)
unless cancelled: the soak is about the service, not the task.

Bounds (exit status 1 when one is violated). All are measured from the same start: the sample
after the warm-up, the first 20% of the tasks and at least two (the first "I'm cold" moves
nothing; the second task is the first to render, track and encode, and adds ~50 MB and the
worker pools' threads). Chosen from the 100-task run here (2-core CPU,
benchmarks/results/soak-cpu.md):

- RSS: at most 30 MB of growth over the remaining 80% of the tasks (start to highest later
  sample). Measured: +5.8 MB (+6.9 MB in an earlier run), a steady 70-90 kB per task, which is
  the task history the service keeps by design (the last 100 tasks with every event: ~47 events
  of ~1.7 kB in memory per task; it stops growing once the oldest are dropped). The first run
  of this soak measured +49 MB: the language-model scorer, called from changing worker threads,
  left ~6-8 MB in each thread's malloc arena (fixed: it now scores on one thread of its own).
  30 MB is about four times the history's share over 80 tasks; a leak of ~0.4 MB per task (a
  pair of 224 px frames, a video buffer) crosses it, as the arena leak above did.
- Open file descriptors: end - start <= 2. Measured: 7 throughout. Every task opens and closes
  its event log, summary, video pipe and HTTP connections, so one descriptor left per task would
  show as ~80; the slack covers a connection the server is still closing (each count is also the
  fewest of three reads over 0.3 s).
- Threads: end - start <= 4. Measured: +0 (18 from the second task on). The worker pools' idle
  threads come and go (an earlier run varied between 16 and 18); a thread left per task would
  show as ~80.
- Child processes: none after any task (the ffmpeg encoder is waited for before a task ends).

    python -m agent bench soak [--tasks 100] [--cancel-every 10] [--steps 40] [--quick] [--json P]
    python -m benchmarks.soak  (the same arguments, with the sim profile)
"""

# Layout: `service` (the server process, its /proc samples, the HTTP client), `tasks` (one task and
# its run folder's checks), `report` (the bounds, the result and its table), `cli` (the soak and
# the command line).
# Its public face is the command (`python -m agent bench` loads `add_arguments` and `run`);
# tests and other code import the parts from the modules above.

from benchmarks.soak.cli import add_arguments, main, run

__all__ = ["add_arguments", "main", "run"]
