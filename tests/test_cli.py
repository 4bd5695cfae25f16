import subprocess
import sys

from vaesim.cli import main


def test_help_lists_program(capsys):
    try:
        main(["--help"])
    except SystemExit as stop:
        assert stop.code == 0
    out = capsys.readouterr().out
    assert "vaesim" in out and "COMMAND" in out


def test_console_script_runs():
    done = subprocess.run([sys.executable, "-m", "vaesim.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout.startswith("vaesim ")
