"""The data error class, apart from the checks that raise it: the CLI catches it without importing
``datasets`` (a light command such as ``r1-recipe report`` should not pay for that import)."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset, source spec or column problem the user can fix in the recipe or the data."""
