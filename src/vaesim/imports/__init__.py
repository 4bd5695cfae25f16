"""Importers: scores computed by other tools, converted into a vaesim results store.

* :mod:`vaesim.imports.vae_ld`: the similarity TSVs of Bonheme & Grzes's
  VAE_learning_dynamics (``vaesim import vae-ld SRC --out DIR``).
"""

from vaesim.imports.vae_ld import LAYER_MAP, ImportSummary, import_vae_ld, read_vae_ld_file

__all__ = ["LAYER_MAP", "ImportSummary", "import_vae_ld", "read_vae_ld_file"]
