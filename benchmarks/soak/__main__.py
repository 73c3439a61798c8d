"""`python -m benchmarks.soak`: see the package docstring."""

from benchmarks.soak.cli import main

raise SystemExit(main())
