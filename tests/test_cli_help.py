"""``vaesim --help`` is fast (no heavy imports) and true (every option explained, no bogus defaults)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from vaesim.cli import build_parser, main

HEAVY = ("torch", "pandas", "matplotlib", "scipy", "pyarrow", "duckdb")


def test_building_the_parser_imports_no_heavy_library():
    code = (
        "import sys; import vaesim.cli as c; c.build_parser(); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_an_unknown_objective_is_refused_before_torch_is_imported():
    code = (
        "import sys; from vaesim.cli import main; "
        "code = main(['train', '--objective', 'vae', '--out', 'unused']); print(code, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["2", "False"]
    assert "--objective 'vae' is unknown" in done.stderr


def test_objective_names_without_torch_match_the_objectives():
    from vaesim.models.names import MAIN_PARAMS
    from vaesim.models.objectives import OBJECTIVES

    assert MAIN_PARAMS == {name: cls.main_param for name, cls in OBJECTIVES.items()}


def _subparser(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


@pytest.mark.parametrize("path", [("train",), ("data", "list"), ("data", "download"), ("study", "run"), ("report",)])
def test_every_option_has_help_and_no_none_default_is_shown(path):
    parser = _subparser(build_parser(), *path)
    for action in parser._actions:
        assert action.help, f"vaesim {' '.join(path)} {action.option_strings or action.dest}: no help"
    text = parser.format_help()
    assert "(default: None)" not in text
    assert text.count("(default:") == len({line for line in text.splitlines() if "(default:" in line})


def test_train_help_shows_one_default_for_device_and_none_for_required_out():
    text = " ".join(_subparser(build_parser(), "train").format_help().split())
    assert text.count("(default: cuda if available, else cpu)") == 1
    assert "--out OUT run directory (created; rerun to resume) --no-progress" in text
    assert "vaesim data list" in text


def test_train_param_that_is_not_a_number_names_the_option(tmp_path, capsys):
    assert main(["train", "--param", "abc", "--out", str(tmp_path)]) == 2
    assert "--param 'abc': expected a number, the value of beta for beta_vae" in capsys.readouterr().err


def test_data_list_names_every_dataset_with_status_size_and_folder(tmp_path, capsys):
    from vaesim.data import DATASETS
    from vaesim.data.dsprites import FILENAME

    (tmp_path / "dsprites").mkdir()
    (tmp_path / "dsprites" / FILENAME).write_bytes(b"x" * 2_500_000)
    assert main(["data", "list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line and line.split()[0] in DATASETS}
    assert set(rows) == set(DATASETS)
    assert rows["dsprites"][1:4] == ["ready", "2.5", "MB"] and rows["dsprites"][4] == str(tmp_path / "dsprites")
    assert rows["shapes3d"][1] == "missing" and rows["shapes3d"][-1] == str(tmp_path / "shapes3d")
    assert rows["dsprites-procedural"][1:3] == ["built", "in"]
    assert "vaesim data download NAME" in out
