"""Importers: scores computed by other tools, converted into a vaesim results store.

* :mod:`vaesim.imports.vae_ld`: the similarity TSVs of Bonheme & Grzes's
  VAE_learning_dynamics (``vaesim import vae-ld SRC --out DIR``).
"""

from vaesim._lazy import lazy_exports

# Imported on first use, so registering ``vaesim import`` in the CLI never pays for pandas / torch.
_EXPORTS = {name: "vaesim.imports.vae_ld" for name in ("LAYER_MAP", "ImportSummary", "import_vae_ld",
                                                         "read_vae_ld_file")}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
