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
    from vaesim.models.names import OBJECTIVE_PARAMS
    from vaesim.models.objectives import objective_params

    assert OBJECTIVE_PARAMS == {name: tuple(objective_params(name)) for name in OBJECTIVES}


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


def test_every_command_names_the_data_root_the_same(tmp_path, capsys):
    """One name for the data root: --data-root on every command, data_root in a spec (old names still read)."""
    from vaesim.study import parse_spec

    for path in (("data", "list"), ("data", "info"), ("data", "download"), ("train",)):
        text = _subparser(build_parser(), *path).format_help()
        assert "--data-root" in text and "--root" not in text.replace("--data-root", ""), path
    assert main(["data", "list", "--data-root", str(tmp_path / "new")]) == 0
    assert str(tmp_path / "new" / "shapes3d") in capsys.readouterr().out
    assert main(["data", "list", "--root", str(tmp_path / "old")]) == 0  # the former name still works
    assert str(tmp_path / "old" / "shapes3d") in capsys.readouterr().out
    spec = {"name": "s", "datasets": ["dsprites-procedural"], "objectives": [{"name": "beta_vae", "values": [1]}],
            "seeds": [0], "training": {"steps": 10}, "probe": {"n": 32}}
    assert parse_spec({**spec, "data_root": "/d"}).data_root == "/d"
    assert parse_spec({**spec, "dataset_root": "/d"}).data_root == "/d"
    assert "data_root: /d" in parse_spec({**spec, "dataset_root": "/d"}).to_yaml()


def test_the_data_root_follows_xdg_cache_home(monkeypatch, tmp_path):
    from pathlib import Path

    from vaesim.data.files import default_root

    monkeypatch.delenv("VAESIM_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_root() == tmp_path / "cache" / "vaesim" / "data"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # invalid by the XDG spec: ignored
    assert default_root() == Path.home() / ".cache" / "vaesim" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_root() == Path.home() / ".cache" / "vaesim" / "data"
    monkeypatch.setenv("VAESIM_DATA", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_root() == tmp_path / "mine"


def test_packaging_declares_types_and_installs_ray_once():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    assert "vaesim[ray]" in extras["test"] and not any(dep.startswith("ray") for dep in extras["test"])
    assert (root / "src" / "vaesim" / "py.typed").is_file()
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["vaesim"]


@pytest.mark.parametrize("where", [["-v", "study", "status"], ["study", "-v", "status"], ["study", "status", "-v"]])
def test_verbose_works_before_or_after_the_command(where, tmp_path, capsys):
    """-v anywhere; -vv anywhere shows the traceback of an error (here: not a study directory)."""
    args = [*where[:where.index("status") + 1], str(tmp_path / "none"), *where[where.index("status") + 1:]]
    assert build_parser().parse_args(args).verbose == 1
    args_vv = [a if a != "-v" else "-vv" for a in args]
    with pytest.raises(FileNotFoundError, match="is not a study directory"):
        main(args_vv)


@pytest.mark.parametrize("group", ["study", "data", "import"])
def test_a_command_group_without_its_action_is_a_usage_error(group, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([group])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"vaesim {group}: error: choose an action: " in err and err.startswith("usage:")


def test_query_help_lists_every_view():
    text = " ".join(_subparser(build_parser(), "query").format_help().split())
    assert "Views: results, runs, training_metrics, latents, disentanglement, layers" in text


def test_yaml_errors_name_the_spec_file(tmp_path, capsys):
    spec = tmp_path / "broken.yaml"
    spec.write_text("name: x\ndatasets: [a\nseeds: 1\n")
    assert main(["study", "plan", str(spec), "--no-calibrate"]) == 2
    err = capsys.readouterr().err
    assert f'in "{spec}", line 2' in err and "<unicode string>" not in err


def test_the_query_layers_view_orders_both_architectures_input_to_output():
    from vaesim.models import FC_LAYER_NAMES, LAYER_NAMES
    from vaesim.models.names import NETWORK_ORDER

    for names in (LAYER_NAMES, FC_LAYER_NAMES):
        assert [n for n in NETWORK_ORDER if n in names] == list(names)
    assert set(NETWORK_ORDER) == set(LAYER_NAMES) | set(FC_LAYER_NAMES)



@pytest.mark.parametrize("command", [["study", "run"], ["study", "plan"]])
def test_the_help_names_every_preset(command, capsys):
    from vaesim.study.spec import preset_names

    with pytest.raises(SystemExit):
        main([*command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"preset name: {', '.join(sorted(preset_names()))}" in text


@pytest.mark.parametrize("command", [["study", "run"], ["study", "variant"]])
def test_the_workers_help_says_what_the_default_does(command):
    parser = build_parser()
    for name in command:
        parser = _subparser(parser, name)
    text = " ".join(parser.format_help().split())
    assert "sequential" not in text  # training runs one process per usable CPU by default
    assert "one per usable CPU for training" in text
