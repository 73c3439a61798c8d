"""`python -m agent`, and the `tpm-agent` console script of an installed package: see agent.cli."""

import signal
import sys

from agent.cli import main


def entry() -> None:
    """Run the CLI and exit with its code (the `tpm-agent` entry point, pyproject.toml)."""
    # Ctrl-C (SIGINT) is the documented way to stop the arm. A launcher that backgrounds us from a
    # non-interactive shell (`cmd &`, nohup) hands SIGINT down as ignored, and Python then never
    # raises KeyboardInterrupt: `kill -INT` would be silently dropped while the arm moves on.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())


if __name__ == "__main__":
    entry()
