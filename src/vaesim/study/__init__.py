"""Studies: one declared grid run end to end (train, extract, compare, store).

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
    "StudyFailed": "vaesim.study.runner",
    "StudyStatus": "vaesim.study.runner",
    "run_study": "vaesim.study.runner",
    "study_status": "vaesim.study.runner",
    "StudySpec": "vaesim.study.spec",
    "checkpoint_steps": "vaesim.study.spec",
    "load_spec": "vaesim.study.spec",
    "parse_spec": "vaesim.study.spec",
    "preset_names": "vaesim.study.spec",
    "RESULT_COLUMNS": "vaesim.study.store",
    "RESULT_KEY": "vaesim.study.store",
    "load_latents": "vaesim.study.store",
    "load_results": "vaesim.study.store",
    "load_runs": "vaesim.study.store",
    "load_training_metrics": "vaesim.study.store",
    "query": "vaesim.study.sql",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from vaesim.study.plan import COMPARISONS, STAGES, plan_study
    from vaesim.study.runner import StudyFailed, StudyStatus, run_study, study_status
    from vaesim.study.spec import StudySpec, checkpoint_steps, load_spec, parse_spec, preset_names
    from vaesim.study.store import (
        RESULT_COLUMNS,
        RESULT_KEY,
        load_latents,
        load_results,
        load_runs,
        load_training_metrics,
    )
    from vaesim.study.sql import query
