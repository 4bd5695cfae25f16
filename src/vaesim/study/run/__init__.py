"""How a study runs: the runner drives the stages' tasks through an executor, one runner per directory.

- :mod:`~vaesim.study.run.runner`: ``run_study`` (checks, repairs, stages in
  order, failures) and ``study_status``;
- :mod:`~vaesim.study.run.executors`: local (this process or a process pool)
  and Ray;
- :mod:`~vaesim.study.run.lock`: one runner per study directory;
- :mod:`~vaesim.study.run.progress`: the per-stage bar;
- :mod:`~vaesim.study.run.shapes`: entries of the wrong kind set aside before a run.
"""
