"""`vaesim import vae-ld` on hostile input (issue 21): never over a study, one line per bad file, no hangs,
nothing accepted silently; `study status` / `study verify` work on an imported store.

Files are written as the authors' compute_similarity writes them (pandas `to_csv(sep="\\t")` of a layer table plus
the model-info columns); FIFOs, devices and symlinks are real ones.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pandas as pd
import pytest

from vaesim.cli import main
from vaesim.imports import import_vae_ld
from vaesim.study import load_results

LAYERS = ("encoder/1", "encoder/2")


def write_pair(folder: Path, *, scores=(0.9, 0.5, 0.4, 0.8), metric="cka", seed=0, other_seed=1, epoch=10,
               name=None) -> Path:
    """One model-pair file: beta_vae beta=1 seed `seed` epoch `epoch` against seed `other_seed` (a seeds pair)."""
    res = {LAYERS[0]: dict(zip(LAYERS, scores[:2])), LAYERS[1]: dict(zip(LAYERS, scores[2:]))}
    table = pd.DataFrame(res).T
    info = {"m1_name": "beta_vae", "p1_name": "beta", "p1_value": 1, "m1_seed": seed, "m2_name": "beta_vae",
            "p2_name": "beta", "p2_value": 1, "m2_seed": other_seed, "m1_epoch": epoch, "m2_epoch": epoch}
    for key, value in info.items():
        table[key] = value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{metric}_beta_vae_1_seed_{seed}_epoch_{epoch}_beta_vae_1_seed_{other_seed}_epoch_{epoch}.tsv")
    table.rename_axis("m1", axis="columns").rename_axis("m2").to_csv(path, sep="\t")
    return path


def one_line_error(capsys, *needles) -> str:
    err = capsys.readouterr().err
    assert err.startswith("vaesim: error:") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_an_import_never_replaces_a_study(tmp_path, capsys):
    write_pair(tmp_path / "src")
    study = tmp_path / "study"
    study.mkdir()
    (study / "spec.yaml").write_text("name: precious\n")
    (study / "runs.parquet").write_bytes(b"months of compute")
    for extra in ([], ["--overwrite"]):
        assert main(["import", "vae-ld", str(tmp_path / "src"), "--out", str(study), *extra]) == 2
        one_line_error(capsys, "already holds a vaesim study", "spec.yaml", "runs.parquet")
    assert (study / "spec.yaml").read_text() == "name: precious\n"
    assert (study / "runs.parquet").read_bytes() == b"months of compute"
    # an earlier import of another source is not replaced either; of the same source only with --overwrite
    write_pair(tmp_path / "other")
    assert main(["import", "vae-ld", str(tmp_path / "other"), "--out", str(tmp_path / "imp")]) == 0
    assert main(["import", "vae-ld", str(tmp_path / "src"), "--out", str(tmp_path / "imp"), "--overwrite"]) == 2
    one_line_error(capsys, "holds an import of", "other")
    assert main(["import", "vae-ld", str(tmp_path / "other"), "--out", str(tmp_path / "imp"), "--overwrite"]) == 0


@pytest.mark.parametrize("case", ["header only", "seed too large", "epoch too large", "negative seed"])
def test_bad_files_get_one_line_naming_them(tmp_path, case, capsys):
    src = tmp_path / "src"
    if case == "header only":
        path = write_pair(src)
        path.write_text(path.read_text().splitlines()[0] + "\n")
    elif case == "seed too large":
        path = write_pair(src, seed=2**64)
    elif case == "epoch too large":
        path = write_pair(src, epoch=10**30)
    else:
        path = write_pair(src, seed=-3)
    assert main(["import", "vae-ld", str(src), "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, str(path), {"header only": "no rows", "seed too large": "m1_seed must be a whole number",
                                       "epoch too large": "whole number", "negative seed": "m1_seed"}[case])
    assert not (tmp_path / "out" / "spec.yaml").exists()


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_fifo_or_device_named_tsv_is_refused_not_read_forever(tmp_path, kind, capsys):
    src = tmp_path / "src"
    write_pair(src)
    special = src / "cka_beta_vae_1_seed_5_epoch_1_beta_vae_1_seed_6_epoch_1.tsv"
    if kind == "fifo":
        os.mkfifo(special)
    else:
        special.symlink_to("/dev/zero")
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.setdefault(
        "code", main(["import", "vae-ld", str(src), "--out", str(tmp_path / "out")])), daemon=True)
    worker.start()
    worker.join(30)
    if worker.is_alive():  # unblock the reader before failing
        if kind == "fifo":
            with open(special, "w"):
                pass
        pytest.fail("the import is still reading")
    assert outcome["code"] == 2
    one_line_error(capsys, str(special), "a FIFO" if kind == "fifo" else "outside")


def test_a_device_inside_src_and_a_huge_file_are_refused(tmp_path, monkeypatch, capsys):
    import vaesim.imports.vae_ld as vae_ld

    src = tmp_path / "src"
    path = write_pair(src)
    monkeypatch.setattr(vae_ld, "MAX_FILE_BYTES", 100)
    assert main(["import", "vae-ld", str(path), "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, str(path), "over the limit of 100 bytes per file")
    monkeypatch.undo()
    assert main(["import", "vae-ld", "/dev/zero", "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, "/dev/zero", "a device")


def test_negative_n_and_scores_outside_the_unit_interval_are_refused(tmp_path, capsys):
    src = write_pair(tmp_path / "src").parent
    assert main(["import", "vae-ld", str(src), "--out", str(tmp_path / "out"), "--n", "-5"]) == 2
    one_line_error(capsys, "--n", "got -5")
    bad = write_pair(tmp_path / "bad", scores=(0.9, 1.7, 0.4, -0.2), metric="procrustes")
    assert main(["import", "vae-ld", str(bad.parent), "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, str(bad), "2 procrustes score(s) outside [0, 1]", "1.7")


def test_nan_scores_and_repeated_scores_are_counted(tmp_path, capsys):
    write_pair(tmp_path / "src" / "a", scores=(0.9, float("nan"), 0.4, float("inf")))
    write_pair(tmp_path / "src" / "b", scores=(0.9, float("nan"), 0.4, float("inf")))  # the same scores again
    assert main(["import", "vae-ld", str(tmp_path / "src"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "2 score(s) are NaN or infinite" in out and "4 score(s) appear in more than one file" in out
    results = load_results(tmp_path / "out")
    assert len(results) == 4
    assert (results.note == "not finite in the source file").sum() == 2
    manifest = json.loads((tmp_path / "out" / "import.json").read_text())
    assert manifest["non_finite_scores"] == 2 and manifest["duplicate_scores"] == 4


def test_the_same_score_with_two_values_is_refused(tmp_path, capsys):
    first = write_pair(tmp_path / "src" / "a", scores=(0.9, 0.5, 0.4, 0.8))
    second = write_pair(tmp_path / "src" / "b", scores=(0.9, 0.5, 0.4, 0.7))
    assert main(["import", "vae-ld", str(tmp_path / "src"), "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, str(first), str(second), "0.8", "0.7")
    assert not (tmp_path / "out").exists()


def test_symlinks_leading_outside_src_are_refused(tmp_path, capsys):
    outside = write_pair(tmp_path / "elsewhere")
    src = tmp_path / "src"
    write_pair(src)
    (src / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (src / "cka_beta_vae_1_seed_7_epoch_1_beta_vae_1_seed_8_epoch_1.tsv").symlink_to(outside)
    assert main(["import", "vae-ld", str(src), "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, "symlinks leading outside", str(outside))


def test_status_and_verify_work_on_an_imported_store(tmp_path, capsys):
    write_pair(tmp_path / "src")
    store = tmp_path / "store"
    assert main(["import", "vae-ld", str(tmp_path / "src"), "--out", str(store)]) == 0
    capsys.readouterr()
    assert main(["study", "status", str(store)]) == 0
    assert "nothing to run; all files match their checksums" in capsys.readouterr().out
    assert main(["study", "verify", str(store)]) == 0
    assert "all files match" in capsys.readouterr().out
    results = next((store / "results").glob("*.parquet"))
    results.write_bytes(results.read_bytes()[:-8])
    assert main(["study", "verify", str(store)]) == 1
    out = capsys.readouterr().out
    assert "does not match its checksum" in out and results.name in out and "--overwrite" in out
    assert main(["study", "status", str(store)]) == 0
    assert "1 problem(s)" in capsys.readouterr().out
