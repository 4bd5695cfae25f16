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


def test_closed_reader_stops_quietly(tmp_path):
    """``vaesim data list | head -0``: the reader is gone before the first write; exit 141, no error line."""
    child = subprocess.Popen([sys.executable, "-m", "vaesim.cli", "data", "list", "--data-root", str(tmp_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()  # no reader left: the child's first flush fails with EPIPE
    stderr = child.stderr.read().decode()
    assert child.wait(timeout=120) == 141, stderr
    assert "error" not in stderr.lower() and "Traceback" not in stderr


def test_broken_pipe_inside_the_work_is_an_error(monkeypatch, capsys):
    """A broken pipe that is not standard output (a worker's connection) is reported, with exit 1."""
    from vaesim.data import commands

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(commands, "_list", broken)
    assert main(["data", "list"]) == 1
    assert "Broken pipe" in capsys.readouterr().err
