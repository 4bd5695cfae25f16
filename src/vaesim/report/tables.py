"""Shaping the results store for findings and figures (pure pandas functions).

The results table has one row per scored layer pair, with the columns of
``docs/architecture.md``: ``dataset, comparison, metric, a_run, a_objective,
a_param_name, a_param, a_seed, a_step, a_layer, b_run, ..., b_layer, n, score,
note``. A pair may be stored in either orientation (a, b) or (b, a); the
functions here never depend on which.
"""

from __future__ import annotations

import pandas as pd

INITIAL_STEP = 0  # the initial weights: a baseline, never a learned state
SIDE_FIELDS = ("run", "objective", "param_name", "param", "seed", "step", "layer")
REQUIRED_COLUMNS = ("comparison", "metric", "score") + tuple(
    f"{side}_{field}" for side in ("a", "b") for field in SIDE_FIELDS
)


def check_results(results: pd.DataFrame, *, name: str = "results") -> pd.DataFrame:
    """Raise if ``results`` lacks a column the report reads; return it unchanged."""
    if not isinstance(results, pd.DataFrame):
        raise TypeError(f"{name}: expected a pandas DataFrame of similarity rows, got {type(results).__name__}")
    missing = [column for column in REQUIRED_COLUMNS if column not in results.columns]
    if missing:
        raise ValueError(
            f"{name}: missing columns {missing}; expected the results columns of docs/architecture.md "
            f"(got {sorted(results.columns)}); load it with vaesim.study.load_results(study_dir)"
        )
    return results


def swap_sides(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows with every ``a_*`` column exchanged with its ``b_*`` column."""
    mapping = {}
    for column in frame.columns:
        if column.startswith("a_") and f"b_{column[2:]}" in frame.columns:
            mapping[column] = f"b_{column[2:]}"
            mapping[f"b_{column[2:]}"] = column
    return frame.rename(columns=mapping)[list(frame.columns)]


def both_orientations(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows plus swapped copies of the rows whose two sides differ.

    After this, a query for (a = X, b = Y) finds the pair whichever way it was
    stored, and a pair whose sides are identical still appears once.
    """
    same = (
        (frame["a_run"] == frame["b_run"])
        & (frame["a_step"] == frame["b_step"])
        & (frame["a_layer"] == frame["b_layer"])
    )
    return pd.concat([frame, swap_sides(frame[~same])], ignore_index=True)


def final_steps(results: pd.DataFrame) -> pd.Series:
    """Last checkpoint step of each run seen in the store: Series run -> step."""
    steps = pd.concat(
        [
            results[["a_run", "a_step"]].set_axis(["run", "step"], axis=1),
            results[["b_run", "b_step"]].set_axis(["run", "step"], axis=1),
        ]
    )
    return steps.groupby("run")["step"].max()


def at_final_step(frame: pd.DataFrame, finals: pd.Series) -> pd.DataFrame:
    """Rows whose two sides are both at their run's final step."""
    a_final = frame["a_run"].map(finals)
    b_final = frame["b_run"].map(finals)
    return frame[(frame["a_step"] == a_final) & (frame["b_step"] == b_final)]


def select(results: pd.DataFrame, *, comparison: str, metric: str) -> pd.DataFrame:
    """Rows of one comparison kind and one metric, with a finite score."""
    rows = results[(results["comparison"] == comparison) & (results["metric"] == metric)]
    return rows[rows["score"].notna()]


def run_info(results: pd.DataFrame) -> pd.DataFrame:
    """One row per run seen in the store: run, objective, param_name, param, seed."""
    fields = ["run", "objective", "param_name", "param", "seed"]
    sides = [results[[f"{side}_{f}" for f in fields]].set_axis(fields, axis=1) for side in ("a", "b")]
    info = pd.concat(sides).drop_duplicates("run")
    return info.sort_values(["objective", "param", "seed", "run"]).reset_index(drop=True)


def same_layer_rows(results: pd.DataFrame, comparison: str, metric: str, step: str) -> pd.DataFrame:
    """Rows of ``comparison`` / ``metric`` pairing a layer with itself, both sides at ``step``.

    ``step``: ``"final"`` (both sides at their run's last checkpoint) or
    ``"initial"`` (both at step 0, the untrained weights).
    """
    rows = select(results, comparison=comparison, metric=metric)
    rows = rows[rows["a_layer"] == rows["b_layer"]]
    if step == "final":
        return at_final_step(rows, final_steps(results))
    if step != "initial":
        raise ValueError(f"same_layer_rows: step={step!r}; expected 'final' or 'initial'")
    return rows[(rows["a_step"] == INITIAL_STEP) & (rows["b_step"] == INITIAL_STEP)]
