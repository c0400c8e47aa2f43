"""Hub dataset ids read from a local mirror laid out like the Hub (tests, air-gapped machines).

With ``R1_RECIPE_HUB_MIRROR=/folder`` set, a Hub id ``org/name`` whose folder ``/folder/org/name``
exists is loaded from that folder through the very same ``load_dataset(path, name, split=...,
data_dir=...)`` call the Hub path makes, so configs, splits, ``data_dir`` and the README's
``configs:`` resolve as they would on the Hub. Ids without a mirrored folder go to the Hub as
before. ``tests/fixtures/hub`` is such a mirror: a few rows of each dataset the recipes name.
"""

from __future__ import annotations

import os
from pathlib import Path

MIRROR_ENV = "R1_RECIPE_HUB_MIRROR"


def hub_location(hub_id: str) -> str:
    """The mirrored folder of ``hub_id`` when ``$R1_RECIPE_HUB_MIRROR`` has it, else ``hub_id``."""
    mirror = os.environ.get(MIRROR_ENV)
    if mirror and (Path(mirror) / hub_id).is_dir():
        return str(Path(mirror) / hub_id)
    return hub_id
