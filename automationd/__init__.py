"""automationd: a single-process automation daemon.

The public surface for python actions is small: raise ``RetryableError`` or ``FatalError``.

The version is written once, in pyproject.toml, and read from the installed metadata on first
use of ``automationd.__version__``: importing ``importlib.metadata`` costs ~20 ms, which
``automationctl`` (and every tab completion of a shell) should pay only for ``--version``.
"""

from typing import Any

from automationd.errors import FatalError, RetryableError

__all__ = ["FatalError", "RetryableError", "__version__"]


def __getattr__(name: str) -> Any:
    if name != "__version__":
        raise AttributeError(f"module 'automationd' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("automationd")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        value = "0+unknown"
    globals()["__version__"] = value
    return value
