"""jifr: joint multimedia item and personalised key-frame recommendation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jifr")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
