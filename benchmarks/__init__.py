"""Reproducible performance runs for dts-watcher; see `python -m benchmarks --help`."""
