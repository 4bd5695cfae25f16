"""How long must runs train? score(T/2, T) for every candidate length T, read from every checkpoint pair.

Each layer's state at step t is a point p(t) on a line, and the similarity of
two states is 1 - |p(s) - p(t)|: a closed form, so the test states the answer
(the shortest T whose score(T/2, T) reaches the target) before the code runs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from synthetic_store import RESULT_COLUMNS
from vaesim.report.settling import TRAINED_ENOUGH, training_length_needed, training_length_needed_text

STEPS = (0, 500, 1000, 2000, 4000, 8000, 16000)  # doubling: every candidate T has a checkpoint at exactly T/2
FINAL = STEPS[-1]


def converging(t: int) -> float:  # settles exponentially with time constant 1,000 steps
    return 1.0 - math.exp(-t / 1000.0)


def late(t: int) -> float:  # changes more in the second half of training than in the first
    return 0.9 * (t / FINAL) ** 2


LAYERS = {
    "encoder.fc": lambda s, t: 1.0 - abs(converging(s) - converging(t)),
    "decoder.deconv1": lambda s, t: 1.0 - abs(converging(s) - converging(t)),
    "encoder.logvar": lambda s, t: 1.0 - abs(late(s) - late(t)),
    # steady-state fluctuation: any two learned states agree at 0.6, the initial one at 0.3
    "encoder.variance": lambda s, t: 1.0 if s == t else 0.3 if 0 in (s, t) else 0.6,
    # not changed by training (0.99 initial to final): not a counted curve
    "encoder.conv1": lambda s, t: 1.0 if s == t else 0.99,
}


def store(runs: int = 2, *, pairs: str = "all") -> pd.DataFrame:
    """within_run rows of ``runs`` runs: every checkpoint pair (``all``) or each checkpoint with the final one."""
    rows = []
    for seed in range(runs):
        run = f"r{seed}"
        for layer, score in LAYERS.items():
            for i, s in enumerate(STEPS):
                for t in STEPS[i:]:
                    if pairs == "final" and t != FINAL:
                        continue
                    side = dict(run=run, objective="beta_vae", param_name="beta", param=1.0, seed=seed, layer=layer)
                    rows.append({**{f"a_{k}": v for k, v in side.items()}, **{f"b_{k}": v for k, v in side.items()},
                                 "a_step": s, "b_step": t, "dataset": "d", "comparison": "within_run",
                                 "metric": "cka", "n": 100, "score": score(s, t), "note": ""})
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def test_candidate_lengths_match_the_closed_form():
    table = training_length_needed(store())
    candidates = [t for t in STEPS if t >= 1000]  # T = 500 has no learned checkpoint before it
    assert sorted(table["T"].unique()) == candidates
    assert (table["half_step"] == table["T"] // 2).all()
    assert set(table["runs"]) == {2}
    assert "encoder.conv1" not in set(table["layer"])  # not changed by training: not counted
    for layer in ("encoder.fc", "decoder.deconv1"):
        rows = table[table["layer"] == layer].set_index("T")
        expected = {T: 1.0 - abs(converging(T // 2) - converging(T)) for T in candidates}
        assert rows["min_score"].to_dict() == pytest.approx(expected, abs=1e-12)
        # 1 - (e^-2 - e^-4) = 0.883 at T = 4,000; 1 - (e^-4 - e^-8) = 0.982 at T = 8,000
        assert rows["enough_from"].iloc[0] == min(T for T in candidates
                                                  if all(expected[u] >= TRAINED_ENOUGH for u in candidates if u >= T))
        assert rows["enough_from"].iloc[0] == 8000
    assert table[table["layer"] == "encoder.variance"]["enough_from"].isna().all()
    logvar = table[table["layer"] == "encoder.logvar"].set_index("T")
    assert logvar["min_score"].loc[FINAL] == pytest.approx(1.0 - 0.9 * 0.75)  # 1 - 0.9 (1 - 1/4)
    assert math.isnan(logvar["enough_from"].iloc[0])  # above the target early, below it late: never enough
    assert (logvar.loc[2000, "below"], logvar.loc[FINAL, "below"]) == (0, 2)


def test_text_names_the_layers_never_settled_and_their_trend():
    text = training_length_needed_text(training_length_needed(store()))
    assert "the other counted layers are enough from T = 8000" in text
    assert "2 layer(s) never reach 0.95 in every run up to T = 16000" in text
    assert "encoder.variance (lowest run 0.600 at T = 4000, 0.600 at T = 16000: flat)" in text
    assert "encoder.logvar" in text and "falling" in text
    assert "rising" not in text


def test_every_layer_settled_gives_the_shortest_length():
    results = store()
    results = results[results["a_layer"].isin(["encoder.fc", "decoder.deconv1"])]
    text = training_length_needed_text(training_length_needed(results))
    assert "every counted layer has CKA(T/2, T) >= 0.95 in every run from T = 8000 on" in text


def test_only_final_comparisons_leave_one_candidate():
    """``within_run: self_and_final``-like stores have a score(T/2, T) only for the final T: no candidates."""
    table = training_length_needed(store(pairs="final"))
    assert set(table["T"]) == {FINAL}
    empty = training_length_needed(store().iloc[0:0])
    assert empty.empty and training_length_needed_text(empty) == ""


def test_one_run_below_the_target_is_counted():
    results = store()
    slow = (results["a_run"] == "r1") & (results["a_layer"] == "encoder.fc") & (results["b_step"] == 8000) & (
        results["a_step"] == 4000)
    results.loc[slow, "score"] = 0.9  # one run of one layer still moving at T = 8,000
    table = training_length_needed(results).set_index(["layer", "T"])
    assert table.loc[("encoder.fc", 8000), "below"] == 1
    assert table.loc[("encoder.fc", 8000), "min_score"] == pytest.approx(0.9)
    assert table.loc[("encoder.fc", 4000), "enough_from"] == FINAL  # one run below at 8,000: enough only at 16,000
    assert np.isclose(table.loc[("decoder.deconv1", 8000), "min_score"], 1.0 - abs(converging(4000) - converging(8000)))


def test_report_section_shows_the_candidate_table_only_when_every_pair_was_compared():
    from vaesim.report.report import _training_length_section

    title, text, html = _training_length_section(store(), "cka")
    assert "id='training-length-needed'" in html and "id='training-length'" in html
    assert "T = 8000" in html and "enough from T =" in html
    assert "never reach 0.95" in text
    _, text, html = _training_length_section(store(pairs="final"), "cka")
    assert "training-length-needed" not in html and "Candidate training lengths" not in text
