"""dts-watcher: turns changes in Alibaba Cloud DTS synchronization jobs into events."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dts-watcher")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
