"""The error classes the CLI prints as one line, apart from the checks that raise them: the CLI catches
them without importing ``datasets`` (a light command such as ``r1-recipe report`` should not pay for
that import), and a module low in the package (the model-folder loader the rewards use) can raise a
``ConfigError`` without importing the config checks, which import the rewards."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset, source spec or column problem the user can fix in the recipe or the data."""


class ConfigError(ValueError):
    """A recipe problem the user fixes in the YAML or on the command line."""
