"""Hostile ``linksim plot``: no run directory, missing, empty or partial results, unknown plot names."""

import shutil

import pytest
from files_helpers import run

from linksim.cli import main
from linksim.plotting import draw_plots
from linksim.run.directory import RESULTS, RunError


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("plotrun") / "run"
    run(out, plots=False)
    return out


@pytest.fixture
def rundir(finished, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(finished, dst)
    return dst


def cli_plot(capsys, *args):
    code = main(["plot", *map(str, args)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_a_missing_folder_is_exit_2(tmp_path, capsys):
    code, err = cli_plot(capsys, tmp_path / "nope")
    assert code == 2 and "is not a folder" in err


def test_a_folder_without_results_is_exit_2(tmp_path, capsys):
    code, err = cli_plot(capsys, tmp_path)
    assert code == 2 and "has no results.csv" in err


def test_an_empty_results_file_is_a_clean_error(rundir):
    (rundir / RESULTS).write_text("")
    with pytest.raises(RunError, match="holds no results rows"):
        draw_plots(rundir)


def test_a_header_only_results_file_is_a_clean_error(rundir):
    (rundir / RESULTS).write_text((rundir / RESULTS).read_text().split("\n", 1)[0] + "\n")
    with pytest.raises(RunError, match="holds no results rows"):
        draw_plots(rundir)


def test_results_without_scheme_or_snr_name_the_missing_columns(rundir, capsys):
    (rundir / RESULTS).write_text("psnr_db,ssim\n20,0.5\n")
    code, err = cli_plot(capsys, rundir)
    assert code == 2 and "lacks the column(s) scheme, snr_db" in err


def test_a_plot_asked_for_whose_column_is_missing_names_it(rundir, capsys):
    code, err = cli_plot(capsys, rundir, "--only", "accuracy_vs_snr", "ber_vs_snr")
    assert code == 2 and "lacks the column(s) accuracy" in err and "accuracy_vs_snr" in err


def test_the_scenarios_own_plots_skip_columns_the_results_lack(rundir):
    text = (rundir / "scenario.yaml").read_text().replace("- psnr_vs_snr", "- psnr_vs_snr\n- accuracy_vs_snr")
    (rundir / "scenario.yaml").write_text(text)
    assert {p.name for p in draw_plots(rundir)} == {"psnr_vs_snr.png", "examples.png"}


@pytest.mark.parametrize("name", ["nonsense", "psnr_vs_nothing", "../../etc/passwd", ""])
def test_an_unknown_plot_name_is_exit_2_listing_the_allowed_names(rundir, capsys, name):
    code, err = cli_plot(capsys, rundir, "--only", name)
    assert code == 2 and "unknown plot" in err and "psnr_vs_snr" in err


def test_partial_results_of_an_interrupted_run_still_plot(rundir):
    lines = (rundir / RESULTS).read_text().splitlines(keepends=True)
    (rundir / RESULTS).write_text("".join(lines[:2]))  # one point only
    assert {p.name for p in draw_plots(rundir, ["psnr_vs_snr", "table"])} == {"psnr_vs_snr.png", "table.md"}


def test_a_damaged_row_is_left_out_of_the_plots_with_a_warning(rundir):
    with open(rundir / RESULTS, "a") as f:
        f.write("A+B,garbage\n")
    with pytest.warns(UserWarning, match="damaged row"):
        assert draw_plots(rundir, ["psnr_vs_snr"])


def test_a_scenario_yaml_that_is_not_yaml_is_a_clean_error(rundir):
    (rundir / "scenario.yaml").write_text("a: [unclosed\n")
    with pytest.raises(RunError, match="scenario.yaml: cannot be read as YAML"):
        draw_plots(rundir)


def _foreign(tmp_path, results="scheme,snr_db,psnr_db\nA,0,20\nA,10,30\n", plots="[psnr_vs_snr, table]"):
    """A folder linksim did not make: somebody's results.csv and a scenario.yaml naming plots only."""
    d = tmp_path / "theirs"
    d.mkdir()
    (d / "results.csv").write_text(results)
    (d / "scenario.yaml").write_text(f"plots: {plots}\n")
    return d


def test_plot_never_overwrites_a_file_it_did_not_write_in_a_folder_linksim_did_not_make(tmp_path, capsys):
    d = _foreign(tmp_path)
    (d / "table.md").write_text("MY OWN NOTES")
    code, err = cli_plot(capsys, d)
    assert code == 2 and "not made by linksim" in err and "table.md" in err
    assert (d / "table.md").read_text() == "MY OWN NOTES" and not (d / "psnr_vs_snr.png").exists()


def test_plot_draws_into_a_foreign_folder_and_may_redraw_what_it_wrote_there(tmp_path, capsys):
    d = _foreign(tmp_path)
    assert cli_plot(capsys, d)[0] == 0 and (d / "psnr_vs_snr.png").exists() and (d / "table.md").exists()
    assert cli_plot(capsys, d)[0] == 0  # its own files, recorded in .linksim-plots.json


def test_results_with_only_the_key_columns_are_an_error_naming_what_each_plot_needs(tmp_path, capsys):
    d = _foreign(tmp_path, results="scheme,snr_db\nA,0\nA,10\n", plots="[psnr_vs_snr, ssim_vs_snr]")
    code, err = cli_plot(capsys, d)
    assert code == 2 and "no plot can be drawn" in err and "psnr_vs_snr (needs psnr_db)" in err, err


def test_only_examples_without_example_images_is_an_error(rundir, capsys):
    shutil.rmtree(rundir / "examples", ignore_errors=True)
    code, err = cli_plot(capsys, rundir, "--only", "examples")
    assert code == 2 and "plot 'examples' has nothing to draw" in err and "example_images" in err


def test_a_results_table_saved_with_a_byte_order_mark_reads_as_without(tmp_path, capsys):
    d = _foreign(tmp_path, results="\ufeffscheme,snr_db,psnr_db\nA,0,20\nA,10,30\n", plots="[psnr_vs_snr]")
    assert cli_plot(capsys, d)[0] == 0 and (d / "psnr_vs_snr.png").exists()


@pytest.mark.parametrize("snr", ["nan", "inf"])
def test_a_row_whose_snr_is_not_finite_is_a_damaged_row(tmp_path, snr):
    d = _foreign(tmp_path, results=f"scheme,snr_db,psnr_db\nA,0,20\nA,{snr},30\n", plots="[psnr_vs_snr]")
    with pytest.warns(UserWarning, match="damaged row.*snr_db is .*not a finite number"):
        assert main(["plot", str(d)]) == 0


def test_the_command_prints_a_warning_as_one_clean_line(tmp_path):
    import subprocess
    import sys

    d = _foreign(tmp_path, results="scheme,snr_db,psnr_db\nA,0,20\nA,nan,30\n", plots="[psnr_vs_snr]")
    out = subprocess.run([sys.executable, "-m", "linksim.cli", "plot", str(d)], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stderr.startswith("warning: ") and out.stderr.count("\n") == 1, out.stderr
    assert "UserWarning" not in out.stderr and ".py:" not in out.stderr  # not Python's warning form


def test_all_rows_damaged_says_so(tmp_path, capsys):
    d = _foreign(tmp_path, results="scheme,snr_db,psnr_db\nA,high,20\nA,low,30\n", plots="[psnr_vs_snr]")
    code, err = cli_plot(capsys, d)
    assert code == 2 and "all 2 row(s) are damaged" in err


@pytest.mark.parametrize("what", ["folder", "dev-zero"])
def test_a_results_csv_that_is_not_a_regular_file_says_so(tmp_path, capsys, what):
    import os

    d = tmp_path / "r"
    d.mkdir()
    if what == "folder":
        (d / "results.csv").mkdir()
    else:
        os.symlink("/dev/zero", d / "results.csv")
    code, err = cli_plot(capsys, d)
    assert code == 2 and "is not a regular file" in err


def test_plots_given_as_a_string_in_the_run_scenario_is_an_error(tmp_path, capsys):
    d = _foreign(tmp_path, plots="psnr_vs_snr")
    code, err = cli_plot(capsys, d)
    assert code == 2 and "plots must be a list of plot names" in err


def test_a_plot_file_that_is_a_folder_is_a_clean_error(rundir, capsys):
    (rundir / "psnr_vs_snr.png").mkdir()
    code, err = cli_plot(capsys, rundir, "--only", "psnr_vs_snr")
    assert code == 2 and "plot 'psnr_vs_snr' cannot be written" in err and "psnr_vs_snr.png" in err, err
