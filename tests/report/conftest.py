"""Fixtures of the report tests: synthetic results stores (see synthetic_store.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from synthetic_store import Synthetic


@pytest.fixture
def synthetic() -> Synthetic:
    return Synthetic()


@pytest.fixture(scope="session")
def default_results() -> pd.DataFrame:
    return Synthetic().results()
