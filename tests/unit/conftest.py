"""Hypothesis settings for the unit tests: a few seconds for the whole suite by default.

`HYPOTHESIS_PROFILE=unit-thorough pytest tests/unit` runs many more examples per property.
Every bug a property found is pinned with @example, so the default run always covers it.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("unit", max_examples=100, deadline=None)
settings.register_profile("unit-thorough", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "unit"))
