"""``vaesim query``: DuckDB SQL over the stored tables of one or more studies, sandboxed and limited.

Views: ``results``, ``runs``, ``training_metrics``, ``latents``,
``disentanglement`` (see :mod:`vaesim.study.store.tables` for the files behind them).
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas, pyarrow and DuckDB load when a query runs, not when the CLI starts
    import pandas as pd

__all__ = ["QUERY_MEMORY_LIMIT", "QUERY_TEMP_LIMIT", "QUERY_TIMEOUT_S", "QUERY_VIEWS", "query"]

#: Defaults of :func:`query`'s limits (``vaesim query --timeout / --memory-limit / --temp-limit``).
QUERY_TIMEOUT_S = 300.0
QUERY_MEMORY_LIMIT = "4GB"
QUERY_TEMP_LIMIT = "20GB"
QUERY_VIEWS = ("results", "runs", "training_metrics", "latents", "disentanglement")


def _layers_view(con) -> None:
    """The ``layers`` view: ``layer``, ``position`` (0 = input) in network order, to sort by (``ORDER BY position``)."""
    import pandas as pd

    from vaesim.models.names import NETWORK_ORDER
    from vaesim.models.plugin_table import merged_order

    order = merged_order(NETWORK_ORDER)  # with the layers of the plug-in architectures the studies record
    con.register("layers_order", pd.DataFrame({"layer": order, "position": range(len(order))}))
    con.execute("CREATE VIEW layers AS SELECT * FROM layers_order")


def query(study_dir: str | os.PathLike | list, sql: str, *, timeout: float | None = QUERY_TIMEOUT_S,
          memory_limit: str = QUERY_MEMORY_LIMIT, temp_limit: str = QUERY_TEMP_LIMIT) -> pd.DataFrame:
    """Run DuckDB ``sql`` over one study, or several; views ``results``, ``runs``, ``training_metrics``,
    ``latents``, ``disentanglement``.

    Example: ``query(d, "SELECT a_layer, avg(score) FROM results WHERE
    comparison = 'within_run' GROUP BY a_layer")``.

    ``study_dir`` may be a list of study directories: each view is then the
    union (by column name) of the studies' tables and gains a ``study``
    column holding the directory as given.

    Every file behind the views is verified against its checksum first
    (:class:`vaesim.study.store.tables.CorruptStudyFile` otherwise) and must lie inside its study
    directory (a symlink or an ``import.json`` entry that leads elsewhere is
    refused). The SQL then runs sandboxed: after the views are created,
    DuckDB's external access is turned off except for exactly those files
    (``allowed_paths``) and the configuration is locked, so the SQL cannot
    read, write, attach or install anything else (``read_csv('/etc/passwd')``,
    ``COPY ... TO``, ``ATTACH``, ``INSTALL`` fail with a permission error).

    Limits: the query is stopped after ``timeout`` seconds (None or 0: no
    limit; ValueError naming the limit), DuckDB holds at most
    ``memory_limit`` in memory and spills the rest into a private temporary
    directory (removed afterwards) of at most ``temp_limit``; Ctrl-C stops a
    running query at once (KeyboardInterrupt).
    """
    import duckdb

    from vaesim.study.schema import RESULT_COLUMNS
    from vaesim.study.store.tables import resolved, study_directory

    if not _statements(sql):
        raise ValueError(f"query: the SQL {sql!r} holds no statement (empty, only comments or ';'); give a query "
                         "such as \"SELECT comparison, count(*) FROM results GROUP BY 1\"")
    several = isinstance(study_dir, (list, tuple))
    dirs = [study_directory(d) for d in (study_dir if several else [study_dir])]
    labels = [str(d) for d in dirs]
    from vaesim.models.plugin_table import register_recorded

    for directory in dirs:  # the layers view orders a plug-in architecture's layers too
        register_recorded(directory)
    if several and len(set(map(resolved, dirs))) != len(dirs):
        raise ValueError(f"query: the same study is named twice in {labels}; name each study once")
    sources = {view: [] for view in QUERY_VIEWS}  # view -> [(study label, [files])]
    allowed: list[str] = []
    for directory, label in zip(dirs, labels):
        for view, files in _view_files(directory).items():
            sources[view].append((label, files))
            allowed += files
    with tempfile.TemporaryDirectory(prefix="vaesim-query-") as spill:
        limits = {"memory_limit": _size(memory_limit, "--memory-limit"), "temp_directory": spill,
                  "max_temp_directory_size": _size(temp_limit, "--temp-limit")}
        try:
            con = duckdb.connect(config=limits)
        except duckdb.Error as error:
            raise ValueError(f"query: DuckDB refused the limits --memory-limit {memory_limit!r} / --temp-limit "
                             f"{temp_limit!r} ({error}); give sizes such as 4GB") from None
        try:
            try:
                for view, parts in sources.items():
                    _create_view(con, view, parts, several)
                _layers_view(con)
                con.execute(f"SET allowed_paths = {_sql_list(allowed)}")
                con.execute("SET enable_external_access = false")
                con.execute("SET lock_configuration = true")
            except duckdb.Error as error:
                where = " ".join(shlex.quote(label) for label in labels)
                raise ValueError(f"query: the study's tables in {', '.join(labels)} could not be opened ({error}); "
                                 f"run `vaesim study verify {where}`") from None
            try:
                return _run_interruptibly(con, sql, timeout)
            except duckdb.Error as error:
                raise ValueError(f"query failed: {error}; the views are {', '.join(QUERY_VIEWS)}, layers (results columns: "
                                 f"{', '.join(RESULT_COLUMNS)}{', study' if several else ''}); files outside the "
                                 "study cannot be read or written from a query") from None
        finally:
            try:
                con.close()
            except duckdb.Error:  # still busy after a second Ctrl-C: the process is ending anyway
                pass


def _view_files(study_dir: Path) -> dict[str, list[str]]:
    """{view: verified files inside ``study_dir``} for one study (CorruptStudyFile / ValueError otherwise)."""
    from vaesim.study.plan import LATENTS_TABLE, RUNS_TABLE, TRAINING_METRICS_TABLE
    from vaesim.study.stages.files import is_written
    from vaesim.study.store.tables import check_inside, check_verified, disentanglement_files, result_files

    files = {"results": result_files(study_dir), "disentanglement": disentanglement_files(study_dir)}
    for view, name in (("runs", RUNS_TABLE), ("training_metrics", TRAINING_METRICS_TABLE), ("latents", LATENTS_TABLE)):
        files[view] = [study_dir / name] if is_written(study_dir / name) else []
    every = [path for paths in files.values() for path in paths]
    check_inside(every, study_dir)
    check_verified(every, study_dir)
    return {view: [str(path) for path in paths] for view, paths in files.items()}


def _create_view(con, view: str, parts: list[tuple[str, list[str]]], several: bool) -> None:
    """``CREATE VIEW view``: the union of every study's files (an empty table of the schema when none)."""
    import pandas as pd

    from vaesim.study.schema import DISENTANGLEMENT_SCHEMA, RESULT_SCHEMA

    selects = []
    for label, files in parts:
        if not files:
            continue
        study = f"'{_sql_text(label)}' AS study, " if several else ""
        selects.append(f"SELECT {study}* FROM read_parquet({_sql_list(files)}, union_by_name=true)")
    if not selects:
        schemas = {"results": RESULT_SCHEMA, "disentanglement": DISENTANGLEMENT_SCHEMA}
        if view not in schemas:
            return  # no run tables yet: the view is absent, as before
        empty = schemas[view].empty_table().to_pandas()
        if several:
            empty.insert(0, "study", pd.Series([], dtype=object))
        con.register(f"{view}_empty", empty)
        selects.append(f"SELECT * FROM {view}_empty")
    con.execute(f"CREATE VIEW {view} AS " + " UNION ALL BY NAME ".join(selects))


def _run_interruptibly(con, sql: str, timeout: float | None) -> pd.DataFrame:
    """``con.execute(sql)`` in a worker thread: Ctrl-C and ``timeout`` interrupt DuckDB within a fraction of a second."""
    import threading

    outcome: dict = {}
    done = threading.Event()  # waited on instead of Thread.join, which a Ctrl-C can leave believing the thread ended

    def work() -> None:
        try:
            result = con.execute(sql)
            outcome["frame"] = result.df() if con.description is not None else None
        except BaseException as error:  # handed to the calling thread
            outcome["error"] = error
        finally:
            done.set()

    started = time.monotonic()
    threading.Thread(target=work, name="vaesim-query", daemon=True).start()
    try:
        while not done.wait(0.05):
            if timeout and time.monotonic() - started > timeout:
                con.interrupt()
                done.wait()
                raise ValueError(f"query: stopped after {timeout:g} s, the time limit (--timeout); narrow the query "
                                 "(a join of results with itself grows with the square of its rows) or pass a larger "
                                 "--timeout (0 = no limit)")
    except KeyboardInterrupt:
        con.interrupt()
        done.wait()
        raise
    if "error" in outcome:
        error = outcome["error"]
        if "memory" in str(error).lower() and "limit" in str(error).lower():
            raise ValueError(f"query: {str(error).splitlines()[0]}; the query needs more than the memory limit "
                             "(--memory-limit) and the spill space (--temp-limit) allow; narrow it or raise them") \
                from None
        raise error
    if outcome.get("frame") is None:
        raise ValueError(f"query: the SQL {sql!r} returns no table; give a SELECT over the views "
                         f"{', '.join(QUERY_VIEWS)}")
    return outcome["frame"]


def _statements(sql: str) -> bool:
    """True when ``sql`` holds anything besides whitespace, comments and ';'."""
    text = re.sub(r"/\*.*?(\*/|$)", " ", sql, flags=re.S)
    text = re.sub(r"--[^\n]*", " ", text)
    return bool(text.replace(";", " ").strip())


def _size(value: str, option: str) -> str:
    """A DuckDB size (``4GB``, ``512MB``, ``1.5GiB``); ValueError naming ``option`` otherwise."""
    text = str(value).strip()
    if not re.fullmatch(r"\d+(\.\d+)?\s*([KMGT]i?B|[KMGT]|B|bytes)", text, flags=re.I):
        raise ValueError(f"query {option}: expected a size such as 4GB or 512MB; got {value!r}")
    return text


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + _sql_text(p) + "'" for p in paths) + "]"


