"""`python -m benchmarks.gpu_modules`: see the package docstring."""

from benchmarks.gpu_modules.cli import main

raise SystemExit(main())
