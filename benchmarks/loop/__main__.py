"""`python -m benchmarks.loop`: see the package docstring."""

from benchmarks.loop.cli import main

raise SystemExit(main())
