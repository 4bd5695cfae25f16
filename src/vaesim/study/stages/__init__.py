"""The work of each stage, the same whatever executor runs it: one module per stage over a shared layer.

Stages, in the order the runner runs them (:data:`vaesim.study.plan.STAGES`):

- :mod:`~vaesim.study.stages.probe`: the probe set of each dataset and its factors;
- :mod:`~vaesim.study.stages.train`: one run into ``runs/<run_id>/``;
- :mod:`~vaesim.study.stages.extract`: every layer of one checkpoint, summarised;
- :mod:`~vaesim.study.stages.compare`: one group of model pairs, scored;
- :mod:`~vaesim.study.stages.disentangle`: disentanglement metrics and UDR;
- :mod:`~vaesim.study.stages.store`: the run tables.

:func:`vaesim.study.stages.task.run_task` runs one task record by its stage.
The shared layer below them: :mod:`~vaesim.study.stages.files` (checksummed
files), :mod:`~vaesim.study.stages.checkpoints` (a run's config,
checkpoints and their recorded checksums), :mod:`~vaesim.study.stages.summaries`
(layer summaries as stored), :mod:`~vaesim.study.stages.devices` and
:mod:`~vaesim.study.stages.progress` (a running task's progress file).
"""
