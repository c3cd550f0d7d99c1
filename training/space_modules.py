"""The Space's own modules (`encdec_lens`, `model_metadata`) for the training tools.

They live in space/ because the Space deploys alone; a checkout uses them from there, without installing, so
that the tools and the Space never disagree. Each tool calls these when it needs them, not at import.
"""

from __future__ import annotations

import os
import sys

SPACE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "space")


def use_space_modules() -> None:
    """Put space/ first on sys.path (once), so that its modules import by bare name, as the Space imports them."""
    if SPACE not in sys.path:
        sys.path.insert(0, SPACE)


def model_metadata():
    """space/model_metadata.py: language names, the Hub-id rule, a model's languages and training data."""
    use_space_modules()
    import model_metadata

    return model_metadata
