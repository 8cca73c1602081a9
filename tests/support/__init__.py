"""What the tests share, in one place (fixtures are in tests/conftest.py):

watcher.py   settings for a watcher under test, saving a detection, reading the
             stream back, waiting on the watcher's counters, events per job
cli.py       the command line as a subprocess: environments, running, reading output
clock.py     a settable clock, for code that takes `now` as an argument
"""
