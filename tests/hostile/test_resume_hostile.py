"""Hostile results.csv on resume: cut in a row, garbage or a merge conflict appended, columns gone.

Damaged rows are left out (with a warning) and their points computed again; a merge-conflict
marker or a header without the needed columns is a clean error.  Never a half row taken as done.
"""

import pandas as pd
import pytest
from files_helpers import YAML, run

from linksim.cli import main
from linksim.run.directory import RESULTS, RunError, read_results


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    df = run(out)
    return out, df


def copy_run(finished, tmp_path):
    import shutil

    src, df = finished
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst, df


def resumed_equals_full(out, full):
    with pytest.warns(UserWarning, match="damaged row"):
        df = run(out)
    cols = ["scheme", "snr_db", "psnr_db", "ssim"]
    key = ["scheme", "snr_db"]
    pd.testing.assert_frame_equal(df[cols].sort_values(key).reset_index(drop=True),
                                  full[cols].sort_values(key).reset_index(drop=True))
    return df


def test_a_row_cut_in_the_middle_is_recomputed_not_taken_as_done(finished, tmp_path):
    out, full = copy_run(finished, tmp_path)
    text = (out / RESULTS).read_text()
    (out / RESULTS).write_text(text[: len(text) - 25])  # inside the last row
    df = resumed_equals_full(out, full)
    assert len(df) == len(full)
    assert list(out.glob("results.damaged-*.csv"))  # the damaged file is kept aside


def test_a_row_cut_inside_its_last_number_is_not_taken_as_done(finished, tmp_path):
    out, full = copy_run(finished, tmp_path)
    text = (out / RESULTS).read_text()
    (out / RESULTS).write_text(text[:-3])  # the row has all its fields, its last number is cut
    _, problems = read_results(out / RESULTS)
    assert problems and "cut off" in problems[0]
    resumed_equals_full(out, full)


@pytest.mark.parametrize("garbage", ["garbage\n", "\x00\x01\x02 binary\n", "1,2,3\n", ",,,,,,,,\n",
                                     "rm -rf /;;;;\n"])
def test_garbage_appended_is_left_out_with_a_warning(finished, tmp_path, garbage):
    out, full = copy_run(finished, tmp_path)
    with open(out / RESULTS, "a") as f:
        f.write(garbage)
    df = resumed_equals_full(out, full)
    assert len(df) == len(full)


def test_bytes_that_are_not_utf8_are_left_out(finished, tmp_path):
    out, full = copy_run(finished, tmp_path)
    with open(out / RESULTS, "ab") as f:
        f.write(b"\xff\xfe\xfa not text\n")
    resumed_equals_full(out, full)


def test_a_row_with_text_in_a_number_column_is_recomputed(finished, tmp_path):
    out, full = copy_run(finished, tmp_path)
    lines = (out / RESULTS).read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    cells = lines[1].rstrip("\n").split(",")
    cells[header.index("psnr_db")] = "oops"
    lines[1] = ",".join(cells) + "\n"
    (out / RESULTS).write_text("".join(lines))
    resumed_equals_full(out, full)


def test_a_merge_conflict_is_a_clean_error_naming_the_line(finished, tmp_path):
    out, _ = copy_run(finished, tmp_path)
    text = (out / RESULTS).read_text()
    (out / RESULTS).write_text(text + "<<<<<<< HEAD\nA+B,x\n=======\nA+B,y\n>>>>>>> other\n")
    before = (out / RESULTS).read_text()
    with pytest.raises(RunError, match=r"results.csv, line \d+: a merge-conflict marker"):
        run(out)
    assert (out / RESULTS).read_text() == before


def test_a_header_without_the_needed_columns_is_a_clean_error(finished, tmp_path):
    out, _ = copy_run(finished, tmp_path)
    text = (out / RESULTS).read_text().split("\n", 1)[1]
    (out / RESULTS).write_text("colA,colB\n" + text)
    with pytest.raises(RunError, match="header lacks the column.*scheme, snr_db"):
        run(out)


def test_an_empty_results_file_computes_every_point(finished, tmp_path):
    out, full = copy_run(finished, tmp_path)
    (out / RESULTS).write_text("")
    assert len(run(out)) == len(full)


def test_an_undamaged_file_reads_exactly_as_pandas_reads_it(finished):
    out, _ = finished
    df, problems = read_results(out / RESULTS)
    assert problems == []
    pd.testing.assert_frame_equal(df, pd.read_csv(out / RESULTS))


def test_the_cli_reports_a_conflicted_results_file_with_exit_2(finished, tmp_path, capsys):
    out, _ = copy_run(finished, tmp_path)
    with open(out / RESULTS, "a") as f:
        f.write("=======\n")
    scen = tmp_path / "s.yaml"
    scen.write_text(YAML.format(name="hostile"))
    assert main(["run", str(scen), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "merge-conflict" in err and "Traceback" not in err


def test_a_results_file_that_is_a_device_is_a_clean_error(finished, tmp_path):
    out, _ = copy_run(finished, tmp_path)
    (out / RESULTS).unlink()
    (out / RESULTS).symlink_to("/dev/zero")
    with pytest.raises(RunError, match="results.csv is a symbolic link|not a regular file"):
        run(out)


def test_a_results_file_over_the_size_limit_is_a_clean_error(finished, tmp_path, monkeypatch):
    import linksim.run.directory as d

    out, _ = copy_run(finished, tmp_path)
    monkeypatch.setattr(d, "MAX_RESULTS_BYTES", 10)
    with pytest.raises(RunError, match="more than the 10-byte limit"):
        read_results(out / RESULTS)
