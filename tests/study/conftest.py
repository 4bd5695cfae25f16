"""Shared fixtures: a tiny study grid (2 objectives x 2 values x 2 seeds) run once per session."""

from __future__ import annotations

import copy
import shutil

import pytest

from study_tiny import TINY

from vaesim.study import parse_spec, run_study

@pytest.fixture
def tiny_dict():
    """A fresh, mutable copy of the tiny spec mapping."""
    return copy.deepcopy(TINY)


@pytest.fixture
def tiny_spec():
    return parse_spec(copy.deepcopy(TINY), source="tiny")


@pytest.fixture(scope="session")
def finished_tiny(tmp_path_factory):
    """The tiny study run to completion once (local executor, 1 torch thread)."""
    out = tmp_path_factory.mktemp("tiny") / "study"
    run_study(parse_spec(copy.deepcopy(TINY)), out, progress=False, threads=1)
    return out


@pytest.fixture
def tiny_copy(finished_tiny, tmp_path):
    """A private copy of the finished tiny study, free to damage."""
    target = tmp_path / "study"
    shutil.copytree(finished_tiny, target)
    return target
