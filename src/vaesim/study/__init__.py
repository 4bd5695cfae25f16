"""Studies: one declared grid run end to end (train, extract, compare, store).

The package's face; its parts (docs/architecture.md shows the tree):

- what a study is: :mod:`~vaesim.study.spec`, :mod:`~vaesim.study.measures`,
  :mod:`~vaesim.study.plan`, :mod:`~vaesim.study.schema`,
  :mod:`~vaesim.study.budget`, :mod:`~vaesim.study.estimate`;
- the work of each stage: :mod:`vaesim.study.stages` (one module per stage
  over a shared layer for checkpoints and task files);
- the store: :mod:`vaesim.study.store` (tables, SQL, verify, provenance);
- how it runs: :mod:`vaesim.study.run` (runner, executors, lock, progress);
- ``vaesim study ...``: :mod:`~vaesim.study.commands`.

    spec = load_spec("quick")                  # or a YAML path
    run_study(spec, "out/quick")               # resumable; executor="ray" for a cluster
    results = load_results("out/quick")        # pandas DataFrame, one row per layer pair
    query("out/quick", "SELECT ... FROM results JOIN runs ...")
"""

from typing import TYPE_CHECKING

from vaesim._lazy import lazy_exports

# Imported on first use, so the CLI's --help never pays for torch / pandas / matplotlib.
_EXPORTS = {
    "COMPARISONS": "vaesim.study.plan",
    "STAGES": "vaesim.study.plan",
    "plan_study": "vaesim.study.plan",
    "StudyFailed": "vaesim.study.run.runner",
    "StudyStatus": "vaesim.study.run.runner",
    "run_study": "vaesim.study.run.runner",
    "study_status": "vaesim.study.run.runner",
    "StudySpec": "vaesim.study.spec",
    "checkpoint_steps": "vaesim.study.spec",
    "load_spec": "vaesim.study.spec",
    "parse_spec": "vaesim.study.spec",
    "preset_names": "vaesim.study.spec",
    "RESULT_COLUMNS": "vaesim.study.schema",
    "RESULT_KEY": "vaesim.study.schema",
    "load_latents": "vaesim.study.store.tables",
    "load_results": "vaesim.study.store.tables",
    "load_runs": "vaesim.study.store.tables",
    "load_training_metrics": "vaesim.study.store.tables",
    "query": "vaesim.study.store.sql",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from vaesim.study.plan import COMPARISONS, STAGES, plan_study
    from vaesim.study.run.runner import StudyFailed, StudyStatus, run_study, study_status
    from vaesim.study.schema import RESULT_COLUMNS, RESULT_KEY
    from vaesim.study.spec import StudySpec, checkpoint_steps, load_spec, parse_spec, preset_names
    from vaesim.study.store.sql import query
    from vaesim.study.store.tables import load_latents, load_results, load_runs, load_training_metrics
