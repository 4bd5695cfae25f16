"""The store: a finished study's tables read back, queried, verified, and its provenance.

- :mod:`~vaesim.study.store.tables`: ``load_results``, ``load_runs``,
  ``load_training_metrics``, ``load_latents``, ``load_disentanglement``
  (each file verified against its checksum first);
- :mod:`~vaesim.study.store.sql`: ``vaesim query``, DuckDB SQL over those tables;
- :mod:`~vaesim.study.store.verify`: ``vaesim study verify``, every file at rest;
- :mod:`~vaesim.study.store.provenance`: which code, machine and command made it.

The stages write the files (:mod:`vaesim.study.stages`); the columns are
:mod:`vaesim.study.schema`'s.
"""
