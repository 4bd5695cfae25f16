"""Every example of the README and docs runs: the Python blocks of the README, and each `vaesim query DIR "SQL"`
of the README and docs/ on a study and on a store imported with `vaesim import vae-ld`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pandas as pd
import pytest

from synthetic_store import Synthetic

from vaesim.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def query_examples() -> list[tuple[str, str]]:
    """(where, SQL) of every `vaesim query DIR "SQL"` example line in the README and docs."""
    found = []
    for path in DOCS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            text = line.strip()
            if not text.startswith("vaesim query "):
                continue
            words = shlex.split(text, comments=True)
            if len(words) == 4:  # vaesim query DIR SQL
                found.append((f"{path.name}:{number}", words[3]))
    return found


def test_the_readmes_python_examples_run():
    from vaesim.similarity.registry import measure_names, unregister_measure

    before = set(measure_names())
    namespace: dict = {}
    blocks = python_blocks(ROOT / "README.md")
    assert len(blocks) >= 2
    try:
        for block in blocks:
            exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the project's own docs
    finally:
        for name in set(measure_names()) - before:  # the example registers a measure: leave the registry as found
            unregister_measure(name)
    assert isinstance(namespace["table"], pd.DataFrame) and len(namespace["table"])


def _vae_ld_store(root: Path) -> Path:
    from vaesim.imports import import_vae_ld

    src = root / "tsv"
    src.mkdir(parents=True)
    for seed in (0, 1):
        for epoch in (0, 5):
            frame = pd.DataFrame({"encoder/1": {"encoder/1": 0.9, "encoder/2": 0.5},
                                  "encoder/2": {"encoder/1": 0.5, "encoder/2": 0.8}}).T
            info = {"m1_name": "beta_vae", "p1_name": "beta", "p1_value": 1.0, "m1_seed": 0,
                    "m2_name": "beta_vae", "p2_name": "beta", "p2_value": 1.0, "m2_seed": seed,
                    "m1_epoch": epoch, "m2_epoch": epoch}
            for key, value in info.items():
                frame[key] = value
            frame.rename_axis("m1", axis="columns").rename_axis("m2").to_csv(
                src / f"cka_beta_vae_1.0_seed_0_epoch_{epoch}_beta_vae_1.0_seed_{seed}_epoch_{epoch}.tsv", sep="\t")
    import_vae_ld(src, root / "store", dataset="dsprites-procedural")
    return root / "store"


@pytest.mark.parametrize("store", ["study", "imported"])
def test_every_query_example_runs(tmp_path, capsys, store):
    examples = query_examples()
    assert any(where.startswith("README.md") for where, _sql in examples)
    folder = Synthetic().write_study(tmp_path / "study") if store == "study" else _vae_ld_store(tmp_path)
    for where, sql in examples:
        assert main(["query", str(folder), sql]) == 0, (where, capsys.readouterr().err)
        out = capsys.readouterr().out
        assert out.strip(), where


def test_the_docs_python_query_runs_on_an_imported_store(tmp_path):
    """docs/study.md's Python example runs a whole study (its query is checked on a study by test_docs_query);
    its query also answers on a store imported with `vaesim import vae-ld`."""
    from vaesim.study import query

    match = re.search(r'query\(out, ((?:"[^"]*"\s*)+)\)', (ROOT / "docs" / "study.md").read_text())
    assert match, "docs/study.md lost its query example"
    sql = "".join(re.findall(r'"([^"]*)"', match.group(1)))
    frame = query(_vae_ld_store(tmp_path), sql)
    assert list(frame["a_layer"]) == ["encoder.conv1", "encoder.conv2"]  # seed 0 against seed 1 at the last epoch
