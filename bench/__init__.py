"""Benchmarks: run as modules, e.g. `python -m bench.protocol` (a script named like a package would shadow it)."""
