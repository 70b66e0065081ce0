"""automationd: a single-process automation daemon.

The public surface for python actions is small: raise ``RetryableError`` or ``FatalError``.
"""

from automationd.errors import FatalError, RetryableError

__version__ = "0.1.0"
__all__ = ["FatalError", "RetryableError", "__version__"]
