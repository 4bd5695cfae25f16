"""``vaesim import checkpoints``: runs trained elsewhere (torch.save state dicts, Lightning .ckpt, safetensors)
become vaesim runs bit for bit, code in a pickle never runs, bad input is named in one line, and a study over them
reaches the same scores and verdicts as the study that trained them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from checkpoint_writer import (lightning_checkpoint, prefixed, save_lightning, save_safetensors, save_state_dict,
                               write_runs_csv)
from vaesim.imports.checkpoint_table import RunsTableError
from vaesim.imports.checkpoints import (CheckpointImportError, import_checkpoints, model_weights,
                                        read_checkpoint_file, step_from_name)
from vaesim.models import build_vae
from vaesim.training import list_checkpoints, load_checkpoint

DATASET = "dsprites-procedural"


def _random_state(seed: int, latent_dim: int = 10, channels: int = 1) -> dict:
    """A conv VAE's state dict with weights no initialiser would give (so a silent re-initialisation shows)."""
    torch.manual_seed(seed)
    model = build_vae("conv", channels, latent_dim)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.05)
    return {name: value.clone() for name, value in model.state_dict().items()}


def _row(folder: str, seed: int = 0, strength: float = 4.0, **extra) -> dict:
    return {"folder": folder, "objective": "beta_vae", "strength": strength, "seed": seed, "dataset": DATASET, **extra}


def _import(src: Path, out: Path, rows: list[dict], **options):
    table = write_runs_csv(src.parent / f"{src.name}-runs.csv", rows)
    options.setdefault("architecture", "conv")
    return import_checkpoints(src, out, table, progress=False, **options)


def _assert_weights(run_dir: Path, step: int, state: dict) -> None:
    model, meta = load_checkpoint(run_dir, step)
    assert meta["step"] == step
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for name, value in state.items():
        assert torch.equal(loaded[name], value), (step, name)


# ---- steps and formats -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, step", [
    ("step_1000.pt", 1000), ("step=1000.ckpt", 1000), ("epoch=3-step=1000.ckpt", 1000), ("1000.pt", 1000),
    ("global_step-1000.bin", 1000), ("epoch=3-step=1000-v1.ckpt", 1000), ("step0.safetensors", 0),
    ("STEP_42.PTH", 42), ("last.ckpt", None), ("model.pt", None), ("steps.pt", None), ("mystep5.pt", None),
    ("step_10-step_20.pt", None), ("epoch=3.ckpt", None),
])
def test_the_step_comes_from_the_file_name_by_the_documented_rules(name, step):
    assert step_from_name(name) == step


def test_weights_round_trip_bit_exactly_from_lightning_plain_and_safetensors_files(tmp_path):
    """One run, four checkpoints in three formats under Lightning's ``model.`` prefix: every step's weights load
    into vaesim unchanged; Lightning's global_step outranks the name; the LightningModule's other keys are left
    out; what came from where is recorded."""
    states = {step: _random_state(step) for step in (0, 100, 200, 300)}
    folder = tmp_path / "src" / "run-a"
    save_state_dict(folder, states[0], "step_0.pt", prefix="model.")
    save_lightning(folder / "lightning_logs" / "version_0" / "checkpoints", states[100], 100, epoch=0,
                   name="epoch=0-step=99.ckpt",  # an off-by-one name: global_step (100) decides
                   hyper_parameters={"beta": 4.0, "lr": 1e-4}, extra={"discriminator.0.weight": torch.ones(3, 2)})
    save_state_dict(folder, states[200], "step_200.pth", prefix="model.")
    save_safetensors(folder, states[300], "300.safetensors", prefix="model.")
    (folder / "notes.txt").write_text("not a checkpoint")
    summary = _import(tmp_path / "src", tmp_path / "out", [_row("run-a", seed=3)], strip_prefix="model.")
    assert summary.skipped == {} and summary.imported == ["ckpt-run-a_dsprites-procedural_beta_vae_beta=4_seed=3"]
    run_dir = tmp_path / "out" / "runs" / summary.imported[0]
    assert list_checkpoints(run_dir) == [0, 100, 200, 300]
    for step, state in states.items():
        _assert_weights(run_dir, step, state)
    record = json.loads((run_dir / "run.json").read_text())
    assert (record["objective"], record["params"], record["seed"], record["steps"]) == ("beta_vae", {"beta": 4.0}, 3,
                                                                                        300)
    assert (record["architecture"], record["num_channels"], record["latent_dim"]) == ("conv", 1, 10)
    source = record["source"]
    assert source["kind"] == "checkpoints" and source["folder"] == "run-a" and source["strip_prefix"] == "model."
    files = {entry["file"]: entry for entry in source["files"]}
    lightning = files["lightning_logs/version_0/checkpoints/epoch=0-step=99.ckpt"]
    assert lightning["step"] == 100 and lightning["format"] == "lightning" and lightning["keys_left_out"] == 1
    assert lightning["hyper_parameters"] == {"beta": 4.0, "lr": 1e-4} and lightning["epoch"] == 0
    assert {files[name]["format"] for name in ("step_0.pt", "step_200.pth", "300.safetensors")} == {
        "state_dict", "safetensors"}
    from vaesim.utils import sha256_file

    assert files["step_200.pth"]["sha256"] == sha256_file(folder / "step_200.pth")
    manifest = json.loads((tmp_path / "out" / "import.json").read_text())
    assert manifest["source"] == "checkpoints" and manifest["counts"] == {"imported": 1, "skipped": 0}
    assert manifest["runs"]["run-a"]["steps"] == [0, 100, 200, 300]


def test_integer_and_bool_buffers_keep_their_dtype_and_floats_are_stored_as_the_models():
    """BatchNorm's num_batches_tracked (int64) survives; float64 or bfloat16 weights become the model's float32."""
    from safetensors.numpy import load_file

    from vaesim.imports.runs import ImportedRun, write_imported_run

    expected = {"bn.weight": torch.zeros(3), "bn.num_batches_tracked": torch.tensor(0),
                "mask": torch.zeros(2, dtype=torch.bool)}
    state = {"bn.weight": torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64),
             "bn.num_batches_tracked": torch.tensor(2 ** 40 + 1), "mask": torch.tensor([True, False])}
    weights, left_out = model_weights(state, expected)
    assert left_out == 0
    assert weights["bn.num_batches_tracked"].dtype == np.int64 and int(weights["bn.num_batches_tracked"]) == 2 ** 40 + 1
    assert weights["mask"].dtype == np.bool_ and weights["mask"].tolist() == [True, False]
    assert weights["bn.weight"].dtype == np.float32
    assert np.array_equal(weights["bn.weight"], np.array([0.1, 0.2, 0.3], dtype=np.float32))
    with pytest.raises(CheckpointImportError, match=r"key 'bn.num_batches_tracked' is torch.float32; the model holds "
                                                    r"torch.int64"):
        model_weights(dict(state, **{"bn.num_batches_tracked": torch.tensor(2.0)}), expected)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run = ImportedRun("r", DATASET, "beta_vae", "beta", {"beta": 1.0}, 0, 10, "conv", 1, 10)
        path = write_imported_run(tmp, run, {10: {**weights, "w64": np.ones(2, np.float64)}})
        stored = load_file(str(path / "checkpoints" / "step_00000010.safetensors"))
    assert {k: v.dtype for k, v in stored.items()} == {"bn.weight": np.float32, "bn.num_batches_tracked": np.int64,
                                                       "mask": np.bool_, "w64": np.float32}
    assert int(stored["bn.num_batches_tracked"]) == 2 ** 40 + 1


def test_a_plug_in_architectures_batchnorm_buffers_survive_the_import(tmp_path):
    """A plug-in ``module:factory`` built through build_vae: its keys are its own module's, and BatchNorm's int64
    ``num_batches_tracked`` (a 0-d tensor) loads back with its dtype, shape and value."""
    pytest.importorskip("vaesim.models.plugins")
    architecture = "bn_plugin:make_vae"  # tests/imports/bn_plugin.py, on the path as this file's folder
    torch.manual_seed(0)
    state = {name: value + 7 if not value.is_floating_point() else torch.randn_like(value)
             for name, value in build_vae(architecture, 3, 6).state_dict().items()}
    assert state["features.1.num_batches_tracked"].dtype == torch.int64
    save_lightning(tmp_path / "src" / "bn", state, 40, hyper_parameters={"arch": "bn"})
    summary = _import(tmp_path / "src", tmp_path / "out", [_row("bn")], architecture=architecture, latent_dim=6,
                      num_channels=3, strip_prefix="model.")
    assert summary.skipped == {}
    model, meta = load_checkpoint(tmp_path / "out" / "runs" / summary.imported[0], 40)
    assert meta["model"] == {"architecture": architecture, "num_channels": 3, "latent_dim": 6}
    loaded = model.state_dict()
    for name, value in state.items():
        assert loaded[name].dtype == value.dtype and torch.equal(loaded[name], value), name
    assert loaded["features.1.num_batches_tracked"].shape == () and int(loaded["features.1.num_batches_tracked"]) == 7


# ---- refusals ----------------------------------------------------------------------------------------------


class _RunsCode:
    """Unpickling this calls ``os.system``: what a hostile checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CallsExec:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


class AttributeDict(dict):
    """Like Lightning's hyper_parameters container: a class outside torch's allow-list (harmless, but refused)."""


def test_a_pickle_that_would_run_code_is_refused_and_its_code_never_runs(tmp_path, capsys):
    from vaesim.cli import main

    state = _random_state(0)
    marker = tmp_path / "MARKER"
    src = tmp_path / "src"
    hostile = lightning_checkpoint(state, 10)
    hostile["callbacks"] = {"Evil": _RunsCode(marker)}
    (src / "system").mkdir(parents=True)
    torch.save(hostile, src / "system" / "epoch=0-step=10.ckpt")
    save_state_dict(src / "exec", state, "step_10.pt", prefix="model.")
    torch.save({"state_dict": prefixed(state, "model."), "global_step": 20, "x": _CallsExec(marker)},
               src / "exec" / "step_20.pt")
    save_lightning(src / "attrdict", state, 10, hyper_parameters=AttributeDict(beta=4.0))
    (src / "junk").mkdir()
    (src / "junk" / "step_10.pt").write_bytes(b"not a checkpoint at all")
    (src / "junk" / "step_20.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    table = write_runs_csv(tmp_path / "runs.csv", [_row(name, seed=i) for i, name in
                                                   enumerate(["system", "exec", "attrdict", "junk"])])
    code = main(["import", "checkpoints", str(src), "--runs", str(table), "--architecture", "conv",
                 "--out", str(tmp_path / "out"), "--strip-prefix", "model."])
    assert code == 1  # nothing imported
    assert not marker.exists()  # no code from any file ran
    out = capsys.readouterr().out
    manifest = json.loads((tmp_path / "out" / "import.json").read_text())
    reasons = {folder: entry["reason"] for folder, entry in manifest["runs"].items()}
    assert all(entry["status"] == "skipped" for entry in manifest["runs"].values())
    assert all("\n" not in reason and f"  {folder}: {reason}" in out for folder, reason in reasons.items())
    assert reasons["system"].startswith("system/epoch=0-step=10.ckpt: refused, not unpickled: it would call "
                                        "posix.system, which torch's weights-only unpickler blocks")
    assert reasons["exec"].startswith("exec/step_20.pt: refused, not unpickled: it names exec, which is not on "
                                      "torch's weights-only allow-list (unpickling would call it)")
    assert f"it names {__name__}.AttributeDict, which is not on torch's weights-only allow-list" in reasons["attrdict"]
    for reason in (reasons["system"], reasons["attrdict"]):
        assert "torch.load(weights_only=True)" in reason and "torch.save(checkpoint['state_dict']" in reason \
               and "safetensors" in reason
    assert reasons["junk"].startswith("junk/step_10.pt: torch.load(weights_only=True) cannot read it "
                                      "(UnpicklingError: Unsupported operand")
    assert reasons["junk"].endswith("expected a file written by torch.save")
    assert not list((tmp_path / "out" / "runs").iterdir())


def test_wrong_keys_and_shapes_refuse_their_run_in_one_line_and_the_rest_import(tmp_path):
    good = _random_state(1)
    src = tmp_path / "src"
    save_lightning(src / "good", good, 50)
    save_lightning(src / "latent12", _random_state(2, latent_dim=12), 50)
    save_lightning(src / "missing", {k: v for k, v in good.items() if k != "decoder.output.bias"}, 50)
    save_lightning(src / "unexpected", dict(good, **{"encoder.extra.weight": torch.zeros(4, 4)}), 50)
    lightning = lightning_checkpoint(good, 50)
    lightning["state_dict"]["model.encoder.note"] = "trained on 2026-01-01"
    (src / "nontensor").mkdir()
    torch.save(lightning, src / "nontensor" / "last.ckpt")
    save_state_dict(src / "nostep", good, "final.pt", prefix="model.")
    save_state_dict(src / "empty", good, "weights.npz")  # not a checkpoint suffix
    save_state_dict(src / "huge", good, "step_100000000.pt", prefix="model.")
    rows = [_row(name, seed=i) for i, name in
            enumerate(["good", "latent12", "missing", "unexpected", "nontensor", "nostep", "empty", "huge"])]
    summary = _import(src, tmp_path / "out", rows, strip_prefix="model.")
    assert summary.imported == ["ckpt-good_dsprites-procedural_beta_vae_beta=4_seed=0"]
    reasons = summary.skipped
    assert all("\n" not in reason for reason in reasons.values())
    model = "the conv VAE (1 channel(s), 10 latents)"
    assert reasons["latent12"] == (f"latent12/epoch=0-step=50.ckpt: key 'encoder.mean.weight' has shape [12, 256]; "
                                   f"{model} expects [10, 256] (+4 more key(s) that do not match)")
    assert reasons["missing"] == (f"missing/epoch=0-step=50.ckpt: key 'decoder.output.bias' is missing; {model} has "
                                  "it with shape [1]")
    assert reasons["unexpected"] == (f"unexpected/epoch=0-step=50.ckpt: key 'encoder.extra.weight' (shape [4, 4]) is "
                                     f"not in {model}")
    assert reasons["nontensor"] == ("nontensor/last.ckpt: entry 'encoder.note' is a str, not a tensor (a state dict "
                                    "holds tensors only)")
    assert reasons["nostep"].startswith("nostep/final.pt: no step: it has no global_step and its name gives none")
    assert reasons["empty"].startswith("empty: no checkpoint files (*.pt, *.pth, *.bin, *.ckpt, *.safetensors)")
    assert reasons["huge"] == ("huge/step_100000000.pt: step 100,000,000; vaesim's checkpoint names hold steps up "
                               "to 99,999,999")
    manifest = json.loads((tmp_path / "out" / "import.json").read_text())
    assert manifest["counts"] == {"imported": 1, "skipped": 7}
    assert {k: v["reason"] for k, v in manifest["runs"].items() if v["status"] == "skipped"} == reasons


def test_a_prefix_is_named_when_it_is_missing_or_wrong(tmp_path):
    save_state_dict(tmp_path / "src" / "run", _random_state(0), "step_10.pt", prefix="model.")
    summary = _import(tmp_path / "src", tmp_path / "plain", [_row("run")])
    assert summary.skipped["run"].endswith("(its keys start with 'model.': --strip-prefix model.?)")
    summary = _import(tmp_path / "src", tmp_path / "vae", [_row("run")], strip_prefix="vae.")
    assert summary.skipped["run"] == ("run/step_10.pt: no key starts with --strip-prefix 'vae.'; its keys start "
                                      "with 'model.'")
    assert read_checkpoint_file(tmp_path / "src" / "run" / "step_10.pt").global_step is None


def test_two_files_with_one_step_import_only_when_their_weights_are_identical(tmp_path):
    """Lightning's last.ckpt copies the final checkpoint (same global_step): imported once; two different weights
    claiming one step are refused, naming both files."""
    first, second = _random_state(1), _random_state(2)
    src = tmp_path / "src"
    save_lightning(src / "last", first, 30, epoch=2)
    save_lightning(src / "last", first, 30, epoch=2, name="last.ckpt")
    save_lightning(src / "last", second, 20, epoch=1)
    save_state_dict(src / "clash", first, "step_30.pt", prefix="model.")
    save_safetensors(src / "clash", second, "30.safetensors", prefix="model.")
    summary = _import(src, tmp_path / "out", [_row("last", seed=0), _row("clash", seed=1)], strip_prefix="model.")
    assert summary.skipped == {"clash": "clash/step_30.pt and clash/30.safetensors both hold step 30 with different "
                                        "weights; keep one of them in the run's folder"}
    run_dir = tmp_path / "out" / "runs" / summary.imported[0]
    _assert_weights(run_dir, 30, first)
    _assert_weights(run_dir, 20, second)
    files = {entry["file"]: entry for entry in json.loads((run_dir / "run.json").read_text())["source"]["files"]}
    assert files["last.ckpt"]["same_as"] == "epoch=2-step=30.ckpt"


# ---- the runs table ------------------------------------------------------------------------------------------


def test_a_bad_runs_table_lists_every_problem_and_nothing_is_written(tmp_path, capsys):
    from vaesim.cli import main

    src = tmp_path / "src"
    for name in ("a", "b", "c", "d", "e", "f", "g", "h", "extra"):
        (src / name).mkdir(parents=True)
    table = tmp_path / "runs.csv"
    table.write_text(
        "folder,objective,strength,seed,dataset,gamma\n"
        "a,beta_vae,4,0,dsprites-procedural,\n"
        "b,vae,4,0,dsprites-procedural,\n"
        "c,beta_vae,high,0,dsprites-procedural,\n"
        "d,beta_vae,4,1.5,dsprites,\n"
        "e,beta_vae,4,0,mnist,\n"
        "a,beta_vae,2,1,dsprites-procedural,\n"
        "ghost,beta_vae,4,3,dsprites-procedural,\n"
        "f,beta_vae,4,0,dsprites-procedural,10\n"
        "g,annealed_vae,25,0,dsprites-procedural,x\n"
        "h,beta_vae,4,0,dsprites-procedural,\n")
    out = tmp_path / "out"
    with pytest.raises(RunsTableError) as refusal:
        import_checkpoints(src, out, table, architecture="conv", progress=False)
    problems = refusal.value.problems
    expected = [
        ("line 3 (b): objective 'vae' is unknown; expected one of beta_vae, annealed_vae, beta_tc_vae, dip_vae_i, "
         "dip_vae_ii, factor_vae"),
        "line 4 (c): strength 'high' is not a finite number",
        "line 5 (d): seed '1.5'; expected a whole number",
        "line 6 (e): dataset 'mnist' is unknown; expected one of dsprites, dsprites-procedural",
        "line 7: folder 'a' is already listed (line 2); one row per run",
        "line 8: folder 'ghost' is not in SRC",
        "line 9 (f): beta_vae has no parameter 'gamma'; its parameters: beta",
        "line 10 (g): gamma = 'x'; expected a finite number",
        "folder 'extra' of SRC has no row",
        ("line 11: folder 'h' and 'a' are both dsprites-procedural beta_vae beta=4 seed 0; a study could not tell "
         "them apart"),
    ]
    for text in expected:
        assert sum(problem.startswith(text) for problem in problems) == 1, (text, problems)
    assert len(problems) == len(expected)
    assert not out.exists()
    code = main(["import", "checkpoints", str(src), "--runs", str(table), "--architecture", "conv", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and f"runs table {table}: {len(expected)} problem(s); nothing was imported:" in err
    assert all(problem in err for problem in problems) and not out.exists()


def test_a_yaml_runs_table_with_other_parameters_and_an_unknown_architecture(tmp_path):
    save_state_dict(tmp_path / "src" / "dip", _random_state(0), "step_10.pt")
    table = tmp_path / "runs.yaml"
    table.write_text("dip: {objective: dip_vae_ii, strength: 5, seed: 2, dataset: dsprites-procedural, "
                     "params: {lambda_d: 50}}\n")
    summary = import_checkpoints(tmp_path / "src", tmp_path / "out", table, architecture="conv", progress=False)
    record = json.loads((tmp_path / "out" / "runs" / summary.imported[0] / "run.json").read_text())
    assert (record["objective"], record["param_name"], record["params"]) == ("dip_vae_ii", "lambda_od",
                                                                             {"lambda_od": 5.0, "lambda_d": 50.0})
    with pytest.raises(CheckpointImportError, match="--architecture 'mlp' with 1 channel"):
        import_checkpoints(tmp_path / "src", tmp_path / "other", table, architecture="mlp", progress=False)
    assert not (tmp_path / "other").exists()
    (tmp_path / "dlib").mkdir()
    (tmp_path / "dlib" / "import.json").write_text(json.dumps({"source": "dlib", "models": {}}))
    with pytest.raises(CheckpointImportError, match=r"holds a dlib import .*; import the checkpoints into another"):
        import_checkpoints(tmp_path / "src", tmp_path / "dlib", table, architecture="conv", progress=False)


def test_the_command_explains_every_option():
    import argparse

    from vaesim.cli import build_parser

    parser = build_parser()
    for name in ("import", "checkpoints"):
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    assert all(action.help for action in parser._actions)
    text = " ".join(parser.format_help().split())
    for words in ("--runs TABLE", "--architecture NAME", "--strip-prefix PREFIX", "--latent-dim N", "--channels C",
                  "global_step", "weights_only=True", "epoch=3-step=1000.ckpt"):
        assert words in text, words
    assert "(default: None)" not in text


# ---- rerun -------------------------------------------------------------------------------------------------


def test_a_rerun_keeps_unchanged_runs_and_imports_changed_files_and_rows_again(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    save_lightning(src / "one", _random_state(1), 10, prefix="")
    save_lightning(src / "two", _random_state(2), 10, prefix="")
    rows = [_row("one", seed=1), _row("two", seed=2)]
    first = _import(src, out, rows)
    assert len(first.imported) == 2
    inode = {run_id: (out / "runs" / run_id / "run.json").stat().st_ino for run_id in first.imported}
    again = _import(src, out, rows)
    assert (again.imported, sorted(again.already)) == ([], sorted(first.imported))
    assert {run_id: (out / "runs" / run_id / "run.json").stat().st_ino for run_id in first.imported} == inode
    changed = _random_state(3)
    save_lightning(src / "one", changed, 10, prefix="")  # the same file name, new weights
    third = _import(src, out, rows)
    assert third.imported == [first.imported[0]] and third.already == [first.imported[1]]
    _assert_weights(out / "runs" / first.imported[0], 10, changed)
    assert (out / "runs" / first.imported[1] / "run.json").stat().st_ino == inode[first.imported[1]]
    fourth = _import(src, out, [_row("one", seed=7), rows[1]])  # the row changed: a new run id, the old run gone
    assert fourth.imported == ["ckpt-one_dsprites-procedural_beta_vae_beta=4_seed=7"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted([fourth.imported[0], first.imported[1]])
    (src / "two" / "epoch=0-step=10.ckpt").write_bytes(b"damaged")  # a source that no longer imports
    fifth = _import(src, out, [_row("one", seed=7), rows[1]])
    assert fifth.already == fourth.imported and list(fifth.skipped) == ["two"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == fourth.imported  # no stale run left for a study


# ---- end to end: checkpoints written by "another trainer", imported, studied ---------------------------------

GRID = {
    "name": "native",
    "datasets": [DATASET],
    "objectives": [{"name": "beta_vae", "values": [1, 4]}],
    "seeds": [0, 1, 2],  # 6 runs: claim 1's paired test needs >= 6 with >= 3 learned checkpoints
    "training": {"steps": 30, "batch_size": 16, "lr": 1e-3, "checkpoints": {"steps": [10, 20, 30]}, "log_every": 10},
    "probe": {"n": 48, "seed": 0, "sample_noise": "shared"},
    "metrics": ["cka"],
    "layers": ["encoder.conv4", "encoder.fc", "encoder.mean", "decoder.fc1", "decoder.fc2", "decoder.deconv1"],
    "comparisons": {"within_run": "self_and_final", "seeds": True, "params": False, "objectives": False,
                    "factors": False, "noise_floor": "final"},
    "device": "cpu",
}
KEY = ["comparison", "metric", "a_objective", "a_param", "a_seed", "a_step", "a_layer", "b_objective", "b_param",
       "b_seed", "b_step", "b_layer"]


def _export(run_dir: Path, folder: Path, style: str) -> None:
    """A vaesim run's checkpoints re-saved as another trainer writes them, the VAE under ``model.``."""
    for step in list_checkpoints(run_dir):
        state = load_checkpoint(run_dir, step)[0].state_dict()
        if style == "lightning":
            if step == 0:  # Lightning saves no untrained checkpoint: step 0 is then vaesim's at the seed
                continue
            save_lightning(folder / "checkpoints", state, step, epoch=step // 10 - 1,
                           hyper_parameters={"beta": 1.0, "lr": 1e-3}, extra={"loss.kl_weight": torch.tensor(1.0)})
            if step == 30:  # ModelCheckpoint(save_last=True)
                save_lightning(folder / "checkpoints", state, step, epoch=2, name="last.ckpt")
        elif style == "plain":  # torch.save(model.state_dict()), the initial weights included
            save_state_dict(folder, state, f"step_{step}.pt", prefix="model.")
        else:
            save_safetensors(folder, state, f"{step}.safetensors", prefix="model.")


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """A study trained here; its runs re-saved as Lightning .ckpt, plain state dicts and safetensors (each with the
    VAE under ``model.``); imported with the CLI; studied again with ``imported:``; both reported."""
    import pandas as pd

    from vaesim.cli import main
    from vaesim.report import write_report
    from vaesim.study import parse_spec, run_study

    root = tmp_path_factory.mktemp("checkpoints")
    native = run_study(parse_spec(GRID), root / "native", progress=False, threads=1)
    runs = pd.read_parquet(native / "runs.parquet").sort_values(["param", "seed"])
    styles = ["lightning", "plain", "safetensors"]
    rows = []
    for number, row in enumerate(runs.itertuples()):
        folder = f"run{number}-{styles[number % 3]}"
        _export(native / "runs" / row.run_id, root / "trained" / folder, styles[number % 3])
        rows.append(_row(folder, seed=row.seed, strength=row.param))
    table = write_runs_csv(root / "runs.csv", rows)
    assert main(["import", "checkpoints", str(root / "trained"), "--runs", str(table), "--architecture", "conv",
                 "--out", str(root / "import"), "--strip-prefix", "model."]) == 0
    spec = dict(GRID, name="imported", imported=str(root / "import"))
    imported = run_study(parse_spec(spec), root / "study", progress=False, threads=1)
    for study in (native, imported):
        write_report(study, progress=False)
    return root, native, imported


@pytest.mark.slow
def test_a_study_over_imported_checkpoints_stores_the_native_studys_scores(studies):
    """Same weights, same scores: every stored comparison of the adopted runs equals the trained study's bit for
    bit, step 0 included (the plain and safetensors runs' own initial weights, the Lightning runs' vaesim
    initialisation at the seed)."""
    from vaesim.study import load_results, load_runs

    _root, native, imported = studies
    a = load_results(native).sort_values(KEY).reset_index(drop=True)
    b = load_results(imported).sort_values(KEY).reset_index(drop=True)
    assert len(a) == len(b) > 100
    assert {"within_run", "seeds"} <= set(a["comparison"])
    assert a[KEY].equals(b[KEY])
    assert np.array_equal(a["score"].to_numpy(), b["score"].to_numpy(), equal_nan=True)
    runs = load_runs(imported).sort_values(["param", "seed"])
    assert list(runs["source"]) == [f"checkpoints:run{n}-{['lightning', 'plain', 'safetensors'][n % 3]}"
                                    for n in range(6)]


@pytest.mark.slow
def test_step_0_is_the_imported_runs_own_when_it_has_one(studies):
    root, _native, imported = studies
    for run_dir in sorted((imported / "runs").iterdir()):
        record = json.loads((run_dir / "imported.json").read_text())
        folder = record["run"]["source"]["folder"]
        initial = run_dir / "checkpoints" / "step_00000000.safetensors"
        source = root / "import" / "runs" / record["run"]["run_id"] / "checkpoints" / "step_00000000.safetensors"
        if not folder.endswith("lightning"):  # the plain and safetensors runs came with their step 0
            assert record["initial"] == "imported" and os.path.samefile(initial, source)
        else:
            assert record["initial"] == "vaesim" and not source.exists()
            meta = json.loads(initial.with_suffix(".json").read_text())
            assert meta["initial"].startswith("vaesim's initialisation (glorot) at seed")


@pytest.mark.slow
def test_claim_1_is_judged_on_the_imported_runs_as_on_the_trained_ones(studies):
    """Three learned checkpoints per run, six runs: claim 1 (encoder settles before decoder) is computed on the
    imported runs (not "not enough data"), with the trained study's verdict and value."""
    import pandas as pd

    from vaesim.report import NOT_ENOUGH_DATA

    _root, native, imported = studies
    claim = {}
    for name, study in (("native", native), ("imported", imported)):
        findings = pd.read_csv(study / "findings.csv")
        claim[name] = findings[findings["finding"].str.startswith("claim 1")].iloc[0]
    assert claim["imported"]["verdict"] != NOT_ENOUGH_DATA
    assert claim["imported"]["detail"].startswith("settle point: encoder median")
    assert "Learned checkpoints per run: 3." in claim["imported"]["detail"]
    assert claim["imported"]["verdict"] == claim["native"]["verdict"]
    assert claim["imported"]["value"] == claim["native"]["value"] and claim["imported"]["n"] == 6
    html = (imported / "report.html").read_text()
    assert "claim 1: encoder layers settle before decoder layers" in html
    assert "6 of 6 runs were trained elsewhere and imported" in html


def test_lightnings_attribute_dict_is_read_as_data_without_lightning(tmp_path, monkeypatch):
    """``save_hyperparameters()`` puts Lightning's AttributeDict in every checkpoint: read as a dict, no code run."""
    import sys
    import types

    from vaesim.imports.checkpoints import read_checkpoint_file

    class AttributeDict(dict):  # pickled under Lightning's own dotted name, as Lightning writes it
        def __getattr__(self, key):
            return self[key]

    parts = ["lightning", "lightning.fabric", "lightning.fabric.utilities", "lightning.fabric.utilities.data"]
    for name in parts:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    AttributeDict.__module__, AttributeDict.__qualname__ = parts[-1], "AttributeDict"
    sys.modules[parts[-1]].AttributeDict = AttributeDict
    state = _random_state(3)
    checkpoint = lightning_checkpoint(state, 30)
    checkpoint["hyper_parameters"] = AttributeDict(beta=4.0, latent_dim=10, name="bvae")
    torch.save(checkpoint, tmp_path / "epoch=1-step=30.ckpt")
    for name in parts:  # Lightning is not installed where the file is read
        monkeypatch.delitem(sys.modules, name)
    read = read_checkpoint_file(tmp_path / "epoch=1-step=30.ckpt")
    assert read.global_step == 30 and read.info["hyper_parameters"] == {"beta": 4.0, "latent_dim": 10, "name": "bvae"}
    assert not any(name.startswith("lightning") for name in sys.modules)
    assert all(torch.equal(value, read.state["model." + key]) for key, value in state.items())
