"""Ground-truth datasets: real file formats, procedural dSprites, probe sets, downloads.

``get_dataset(name, root=None, **options)`` returns a
:class:`GroundTruthDataset` (``ds[i] -> (float32 (C, 64, 64) in [0, 1], int64
(F,))``); ``DATASETS`` lists the names; ``require_files`` says which files a
dataset needs and where; ``make_probe_set`` / ``ProbeSet`` fix the inputs
every checkpoint is measured on.
"""

from vaesim.data.base import GroundTruthDataset
from vaesim.data.download import DownloadError, download_dataset, download_file
from vaesim.data.probe import ProbeSet, make_probe_set
from vaesim.data.procedural import render as render_dsprites
from vaesim.data.files import default_root
from vaesim.data.registry import DATASETS, dataset_dir, get_dataset, require_files

__all__ = [
    "DATASETS",
    "DownloadError",
    "GroundTruthDataset",
    "ProbeSet",
    "dataset_dir",
    "default_root",
    "download_dataset",
    "download_file",
    "get_dataset",
    "make_probe_set",
    "render_dsprites",
    "require_files",
]
