"""Disentanglement scores per model: chance levels from the definition or from untrained networks."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from vaesim.report import disentanglement as D


def _scores(rows):
    return pd.DataFrame([dict(dataset="d", run=f"r{p}-s{s}", objective="beta_vae", param_name="beta", param=p,
                              seed=s, step=step, metric=metric, value=value)
                         for p, s, step, metric, value in rows])


def test_definitional_chance_levels():
    assert D.definitional_chance("beta_vae", [3, 6, 40, 32, 32])[0] == pytest.approx(0.2)
    assert D.definitional_chance("factor_vae", [2, 2])[0] == pytest.approx(0.5)
    assert D.definitional_chance("dci_informativeness", [2, 4])[0] == pytest.approx((0.5 + 0.25) / 2)
    assert D.definitional_chance("mig", None)[0] == 0.0 and D.definitional_chance("explicitness", None)[0] == 0.5
    assert math.isnan(D.definitional_chance("modularity", [2])[0])
    assert math.isnan(D.definitional_chance("beta_vae", None)[0])


def test_untrained_scores_set_the_chance_level_when_stored():
    # step 0 (untrained) scored: modularity 0.8-0.85 for networks that know nothing; trained 0.84 is not better
    scores = _scores([(1.0, 0, 0, "modularity", 0.80), (1.0, 1, 0, "modularity", 0.85),
                      (1.0, 0, 100, "modularity", 0.84), (1.0, 1, 100, "modularity", 0.84),
                      (8.0, 0, 0, "modularity", 0.82), (8.0, 0, 100, "modularity", 0.95)])
    chance = D.chance_levels(scores, {"d": None})
    assert chance.loc[0, "source"] == "untrained networks (step 0, 3 runs)"
    assert chance.loc[0, "chance"] == pytest.approx((0.80 + 0.85 + 0.82) / 3)
    assert chance.loc[0, "highest_untrained"] == pytest.approx(0.85)
    table = D.disentanglement_table(scores, chance).set_index("param")
    assert bool(table.loc[1.0, "near_chance"]) and not bool(table.loc[8.0, "near_chance"])
    assert table.loc[1.0, "seeds"] == 2 and table.loc[1.0, "mean"] == pytest.approx(0.84)
    assert "modularity for 1 of 2 models" in D.chance_warning(table.reset_index(), chance)


def test_near_chance_without_an_untrained_reference():
    assert D.near_chance(0.27, 0.2, math.nan) and not D.near_chance(0.29, 0.2, math.nan)  # 0.2 + 0.1 * 0.8
    assert not D.near_chance(0.1, math.nan, math.nan)  # no chance level known: no warning
