"""Misuse of the ``linksim`` command: exit codes, one error form, --debug, several files,
``validate`` without TensorFlow and fast, and a terminal free of TensorFlow's start-up lines."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from linksim import console
from validate_helpers import GOOD, cli

REPO = Path(__file__).resolve().parents[2]


run = cli


def test_no_command_prints_help_and_exits_2(capsys):
    rc, out, _ = run(capsys)
    assert rc == 2 and "usage" in out


def test_an_unknown_command_is_a_usage_error_with_exit_2(capsys):
    rc, _, err = run(capsys, "frobnicate")
    assert rc == 2 and "invalid choice" in err and "Traceback" not in err


def test_validate_without_a_file_is_a_usage_error(capsys):
    rc, _, err = run(capsys, "validate")
    assert rc == 2 and "scenario" in err


def test_an_unknown_flag_is_a_usage_error(capsys):
    rc, _, err = run(capsys, "validate", "--frobnicate", "x.yaml")
    assert rc == 2 and "unrecognized arguments" in err


def test_help_exits_0(capsys):
    rc, out, _ = run(capsys, "validate", "--help")
    assert rc == 0 and "--debug" in out


def test_run_on_a_missing_file_is_exit_2_naming_it(tmp_path, capsys):
    rc, _, err = run(capsys, "run", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o"))
    assert rc == 2 and "missing.yaml: file not found" in err and "Traceback" not in err


def test_each_of_several_files_is_reported_and_any_bad_one_makes_exit_2(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    bad1 = tmp_path / "bad1.yaml"
    bad1.write_text(GOOD.replace("webp", "wepb"))
    bad2 = tmp_path / "bad2.yaml"
    bad2.write_bytes(b"\xff\xfe garbage")
    rc, out, err = run(capsys, "validate", str(bad1), str(good), str(bad2))
    assert rc == 2
    assert f"{good}: ok" in out
    assert f"{bad1}:6: field 'schemes[0].codec.type'" in err and "Did you mean 'webp'" in err
    assert f"{bad2}:1:" in err and "not UTF-8" in err
    assert "2 of 3 file(s) invalid" in err and "Traceback" not in err


def test_debug_adds_the_traceback_to_a_user_error(tmp_path, capsys):
    p = tmp_path / "s.yaml"
    p.write_text(GOOD.replace("webp", "wepb"))
    rc, _, err = run(capsys, "--debug", "validate", str(p))
    assert rc == 2 and "Traceback" in err and "error: " in err
    rc, _, err = run(capsys, "validate", str(p), "--debug")   # after the command too
    assert rc == 2 and "Traceback" in err


def test_an_unexpected_failure_is_one_line_with_exit_1_and_the_traceback_only_with_debug(tmp_path, capsys,
                                                                                          monkeypatch):
    import linksim.scenario

    def boom(path):
        raise RuntimeError("something broke")

    monkeypatch.setattr(linksim.scenario, "load_scenario", boom)
    p = tmp_path / "s.yaml"
    p.write_text(GOOD)
    rc, _, err = run(capsys, "validate", str(p))
    assert rc == 1 and "linksim failed: RuntimeError: something broke" in err and "--debug" in err
    assert "Traceback" not in err
    rc, _, err = run(capsys, "--debug", "validate", str(p))
    assert rc == 1 and "Traceback" in err


def test_a_missing_plugin_is_exit_2_naming_it(tmp_path, capsys):
    p = tmp_path / "s.yaml"
    p.write_text(GOOD)
    rc, _, err = run(capsys, "validate", str(p), "--plugin", str(tmp_path / "nope.py"))
    assert rc == 2 and "nope.py" in err and "file not found" in err and "Traceback" not in err


def test_a_scenario_plugin_that_is_not_python_is_exit_2(tmp_path, capsys):
    (tmp_path / "p.txt").write_text("x")
    p = tmp_path / "s.yaml"
    p.write_text(GOOD + "plugins: [p.txt]\n")
    rc, _, err = run(capsys, "validate", str(p))
    assert rc == 2 and "field 'plugins[0]'" in err and "not a Python file" in err


def test_validate_imports_no_tensorflow_and_answers_fast():
    files = sorted(str(p) for p in (REPO / "scenarios").glob("*.yaml"))
    code = ("import sys, time\n"
            "t = time.time()\n"
            "from linksim.cli import main\n"
            f"rc = main(['validate', *{files!r}])\n"
            "print(rc, 'tensorflow' in sys.modules, 'sionna' in sys.modules, time.time() - t)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    rc, tf, sionna, secs = out.stdout.split()[-4:]
    assert (rc, tf, sionna) == ("0", "False", "False"), out.stdout + out.stderr
    # well under a second per file (about 0.03 s each, plus the imports, on the 2-core CI machine)
    assert float(secs) < 0.25 * len(files) + 2, secs


def test_a_command_that_imports_tensorflow_leaves_no_start_up_lines_on_stderr(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-m", "linksim.cli", "list"], capture_output=True, text=True,
                         cwd=REPO, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "schemes:" in out.stdout
    noise = [line for line in out.stderr.splitlines() if console.NOISE.search(line)]
    assert not noise, out.stderr
    assert not any(line.startswith(("I0000", "W0000", "E0000")) for line in out.stderr.splitlines()), out.stderr


def test_the_quiet_import_keeps_lines_that_are_not_start_up_notices(capfd, monkeypatch):
    def noisy():
        os.write(2, b"I0000 00:00 1 port.cc:153] oneDNN custom operations are on.\nreal problem here\n")

    monkeypatch.setattr(console, "_import", noisy)
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    console.import_tensorflow_quietly()
    err = capfd.readouterr().err
    assert "real problem here" in err and "oneDNN" not in err


@pytest.mark.parametrize("argv", [["plot", "/no/such/run"], ["train", "/no/such.yaml"]])
def test_other_commands_on_missing_inputs_are_exit_2_without_a_traceback(capsys, argv):
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and "Traceback" not in err and "/no/such" in err


def test_a_plugin_that_calls_sys_exit_is_exit_2_not_a_silent_success(tmp_path, capsys):
    s = tmp_path / "s.yaml"
    s.write_text(GOOD)
    plugin = tmp_path / "quits.py"
    plugin.write_text("import sys\nsys.exit(0)\n")
    rc, _, err = run(capsys, "validate", str(s), "--plugin", str(plugin))
    assert rc == 2 and "quits.py, line 2: import failed: SystemExit" in err, err


BAD_SCHEME = """\
from linksim import registry
from linksim.schemes.base import Scheme


@registry.SCHEMES.register("hostile_bad")
class Bad(Scheme):
    def __init__(self, **kw):
        1 / 0
"""


@pytest.fixture(scope="module")
def bad_scheme_plugin(tmp_path_factory):
    """One file for the module: a plug-in is loaded once per process and path (a name registers once)."""
    plugin = tmp_path_factory.mktemp("plugin") / "bad_scheme.py"
    plugin.write_text(BAD_SCHEME)
    return plugin


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_plugin_scheme_whose_constructor_raises_is_exit_2_naming_the_plugin_file_and_line(tmp_path, capsys,
                                                                                           command, bad_scheme_plugin):
    s = tmp_path / "s.yaml"
    s.write_text(GOOD.replace("{type: separation, codec: {type: webp}}", "{type: hostile_bad}"))
    plugin = bad_scheme_plugin
    extra = ["--out", str(tmp_path / "out"), "--no-progress"] if command == "run" else []
    rc, _, err = run(capsys, command, str(s), "--plugin", str(plugin), *extra)
    assert rc == 2 and "field 'schemes[0]'" in err and f"{plugin}, line 8: failed to build: ZeroDivisionError" in err, err
    assert not (tmp_path / "out" / "results.csv").exists()


def test_no_command_prints_the_usage_and_an_error_line(capsys):
    rc, out, err = run(capsys, "--debug")
    assert rc == 2 and "usage:" in out and "error: no command given" in err
