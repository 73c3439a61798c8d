"""`python -m benchmarks.modules`: see the package docstring."""

from benchmarks.modules.cli import main

raise SystemExit(main())
