"""Benchmarks. Run them as modules (`python -m bench.protocol`): a script named like
a package would shadow that package."""
