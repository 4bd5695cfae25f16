"""Studies: one declared grid run end to end (train, extract, compare, store).

    spec = load_spec("quick")                  # or a YAML path
    run_study(spec, "out/quick")               # resumable; executor="ray" for a cluster
    results = load_results("out/quick")        # pandas DataFrame, one row per layer pair
    query("out/quick", "SELECT ... FROM results JOIN runs ...")
"""

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
    query,
)

__all__ = [
    "COMPARISONS",
    "RESULT_COLUMNS",
    "RESULT_KEY",
    "STAGES",
    "StudyFailed",
    "StudySpec",
    "StudyStatus",
    "checkpoint_steps",
    "load_latents",
    "load_results",
    "load_runs",
    "load_spec",
    "load_training_metrics",
    "parse_spec",
    "plan_study",
    "preset_names",
    "query",
    "run_study",
    "study_status",
]
