"""The same from synchronous code (a Flask view, a script, a notebook): no event loop needed.

    python examples/embed_sync.py "I spilled the milk" [KEY=VALUE ...]

`BlockingRuntime` runs the runtime on its own event-loop thread; leaving the loop early (break,
Ctrl-C) cancels the episode and returns once the arm has stopped. `runtime.cancel()` works from
any thread and lets the loop end with the "cancelled" outcome.
"""

import sys

from agent import BlockingRuntime, Step, load_config

if __name__ == "__main__":
    request = sys.argv[1] if len(sys.argv) > 1 else "I spilled the milk"
    with BlockingRuntime(load_config("sim", sys.argv[2:])) as runtime:
        for event in runtime.execute(request):
            if isinstance(event, Step):
                print(f"step {event.index:3d}", *(f"{v:+.3f}" for v in event.ee_pos), flush=True)
        print(runtime.run("I am thirsty").status)  # run() returns only the outcome
