"""Where each dataset's files come from: URLs, published sizes and SHA-256 values (a table, no downloading).

Below both the registry and the loaders: :mod:`vaesim.data.files` names a
missing file's source from here, and :mod:`vaesim.data.download` fetches
what this table lists.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteFile:
    url: str
    filename: str
    sha256: str | None = None  # published value, or None when unknown
    size: int | None = None
    extract: str | None = None  # "cars3d": pull car_*_mesh.mat out of the tar.gz


_NORB = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
# Source of the smallNORB and Shapes3D sizes and SHA-256 values:
# tensorflow/datasets, tensorflow_datasets/datasets/{smallnorb,shapes3d}/checksums.tsv.
SOURCES: dict[str, list[RemoteFile]] = {
    "dsprites": [
        RemoteFile(
            "https://github.com/deepmind/dsprites-dataset/raw/master/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
            "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
        )
    ],
    "shapes3d": [
        RemoteFile(
            "https://storage.googleapis.com/3d-shapes/3dshapes.h5",
            "3dshapes.h5",
            "0a0f6ed98baff276a50f3a081a7434d788da63cb135a98189b2a5b5769be1785",
            267573662,
        )
    ],
    "smallnorb": [
        RemoteFile(_NORB + name, name, sha, size)
        for name, size, sha in [
            ("smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat.gz", 131896188, "5ffd6272a07d32695ee1082a26a41a93a37aab8c28da047f8c34ed348d214873"),
            ("smallnorb-5x46789x9x18x6x2x96x96-training-cat.mat.gz", 348, "2784e542c1922060691090952b6cd6278879a216c90f81476f0f00256d42cdaa"),
            ("smallnorb-5x46789x9x18x6x2x96x96-training-info.mat.gz", 71052, "de7eb932ebe7a4ee16217fead60660d0eb3d23632c2f4d1c51f88c501c17bf32"),
            ("smallnorb-5x01235x9x18x6x2x96x96-testing-dat.mat.gz", 130799817, "cf7104eed3e51174d2f65b66d1e5878b9da233b886f161b0d88f4510ba2c7474"),
            ("smallnorb-5x01235x9x18x6x2x96x96-testing-cat.mat.gz", 347, "ecaf6d5bb8c3bc5eab9cf0258f6d2198dd474e016e374836fc097f2e5ff509ff"),
            ("smallnorb-5x01235x9x18x6x2x96x96-testing-info.mat.gz", 10428, "16adf314226327ee006d1a44db8cfef52773c06c829951d5653a9f6f310248a2"),
        ]
    ],
    "cars3d": [
        RemoteFile("http://www.scottreed.info/files/nips2015-analogy-data.tar.gz", "nips2015-analogy-data.tar.gz", extract="cars3d")
    ],
    "mpi3d": [
        RemoteFile(
            f"https://storage.googleapis.com/disentanglement_dataset/Final_Dataset/mpi3d_{variant}.npz",
            f"mpi3d_{variant}.npz",
        )
        for variant in ("real", "realistic", "toy")
    ],
}
#: datasets whose files are another dataset's
ALIASES = {"color-dsprites": "dsprites", "noisy-dsprites": "dsprites"}


def remote_files(name: str) -> list[RemoteFile]:
    """Remote files of a dataset by name (colour/noisy variants use the dSprites file); [] when none or unknown."""
    return SOURCES.get(ALIASES.get(name, name), [])


def source_hint(name: str) -> str:
    """Where a dataset's files come from (base URLs), for error messages; reads no registry."""
    found = remote_files(name)
    return ", ".join(sorted({f.url.rsplit("/", 1)[0] + "/" for f in found})) if found else "(no download: built in)"
