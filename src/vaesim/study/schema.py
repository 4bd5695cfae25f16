"""Columns and types of the tables a study stores: written by the stages, read by the store.

- :data:`RESULT_SCHEMA`: ``results/<task>.parquet``, one row per layer pair
  and metric (:data:`RESULT_COLUMNS`; :data:`RESULT_KEY` identifies a row);
- :data:`DISENTANGLEMENT_SCHEMA`: ``disentanglement/**.parquet``, one row
  per run, step, metric and value.

The file layout (which table lies where) is :mod:`vaesim.study.plan`'s.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["DISENTANGLEMENT_SCHEMA", "RESULT_COLUMNS", "RESULT_KEY", "RESULT_SCHEMA"]


RESULT_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("comparison", pa.string()),
        ("metric", pa.string()),
        ("a_run", pa.string()),
        ("a_objective", pa.string()),
        ("a_param_name", pa.string()),
        ("a_param", pa.float64()),
        ("a_seed", pa.int64()),
        ("a_step", pa.int64()),
        ("a_epoch", pa.float64()),
        ("a_layer", pa.string()),
        ("b_run", pa.string()),
        ("b_objective", pa.string()),
        ("b_param_name", pa.string()),
        ("b_param", pa.float64()),
        ("b_seed", pa.int64()),
        ("b_step", pa.int64()),
        ("b_epoch", pa.float64()),
        ("b_layer", pa.string()),
        ("n", pa.int64()),
        ("score", pa.float64()),
        ("note", pa.string()),
    ]
)


RESULT_COLUMNS = tuple(RESULT_SCHEMA.names)


# A row is identified by these; a complete study has each combination once.
RESULT_KEY = ("comparison", "metric", "a_run", "a_step", "a_layer", "b_run", "b_step", "b_layer")


DISENTANGLEMENT_SCHEMA = pa.schema([
    ("dataset", pa.string()),
    ("run", pa.string()),
    ("objective", pa.string()),
    ("param_name", pa.string()),
    ("param", pa.float64()),
    ("seed", pa.int64()),
    ("step", pa.int64()),
    ("metric", pa.string()),
    ("value", pa.float64()),
])
