"""Reproducible performance runs for dts-watcher: `python -m benchmarks` (or
`python3 dev.py bench`) prints a table of six measures, each a ratio against a baseline
measured in the same run (README, section Performance).

    runner.py    the measures, the table, the command line
    worker.py    the measured side, one process per run (the watcher, the floor, ...)
    simproc.py   the DTS simulator in a process of its own, and its admin API
    workload.py  10,000 realistic jobs over four regions, and the storm step
    stats.py     medians, percentiles, request rates
    profiles.py  summaries of the py-spy profiles `--profile DIR` records
"""
