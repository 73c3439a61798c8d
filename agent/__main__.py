"""`python -m agent`: see agent.cli."""

import signal
import sys

from agent.cli import main

if __name__ == "__main__":
    # Ctrl-C (SIGINT) is the documented way to stop the arm. A launcher that backgrounds us from a
    # non-interactive shell (`cmd &`, nohup) hands SIGINT down as ignored, and Python then never
    # raises KeyboardInterrupt: `kill -INT` would be silently dropped while the arm moves on.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
