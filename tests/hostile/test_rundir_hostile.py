"""Hostile run directories: --out a file, read-only or somebody else's folder; names leaving runs/;
colliding example names; a failed run's scenario.yaml; nothing computed is lost."""

import json

import numpy as np
import pytest
from files_helpers import YAML, refuse_writes_in, run, scenario

from linksim.cli import main
from linksim.run.directory import MARKER, RESULTS, RunDirectory, RunError, default_run_dir, example_path


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_out_that_is_a_file_is_refused_and_left_unchanged(tmp_path):
    f = tmp_path / "out"
    f.write_text("mine")
    with pytest.raises(RunError, match="is a file, not a folder"):
        run(f)
    assert f.read_text() == "mine"


def test_out_below_a_file_is_a_clean_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(RunError, match="is a file, not a folder|cannot create"):
        run(f / "sub")


def test_out_that_cannot_be_written_is_a_clean_error(tmp_path, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    refuse_writes_in(monkeypatch, out)
    with pytest.raises(RunError, match=r"is not writable \(Permission denied\)"):
        run(out)
    assert list(out.iterdir()) == []


def test_out_that_cannot_be_created_is_a_clean_error(tmp_path, monkeypatch):
    def refuse(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(tmp_path), "mkdir", refuse)
    with pytest.raises(RunError, match=r"cannot create the folder \(Permission denied\)"):
        RunDirectory(tmp_path / "new").open({}, "")


def test_a_foreign_folder_with_files_is_refused_without_overwrite(tmp_path):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("precious")
    before = snapshot(out)
    with pytest.raises(RunError, match="linksim did not create .*chapter1.tex.*--overwrite"):
        run(out)
    assert snapshot(out) == before


@pytest.mark.parametrize("theirs", ["results.csv", "meta.json", "scenario.yaml"])
def test_somebody_elses_results_meta_or_scenario_are_never_overwritten_even_with_overwrite(tmp_path, theirs):
    out = tmp_path / "other"
    out.mkdir()
    (out / theirs).write_text("scheme,snr_db\nmine,1\n" if theirs == "results.csv" else '{"theirs": 1}')
    before = snapshot(out)
    with pytest.raises(RunError, match=f"holds {theirs} that linksim did not write"):
        run(out, overwrite=True)
    assert snapshot(out) == before


def test_overwrite_writes_into_a_foreign_folder_without_touching_its_files(tmp_path):
    out = tmp_path / "mixed"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    df = run(out, overwrite=True)
    assert len(df) == 4 and (out / "notes.txt").read_text() == "keep me"
    assert json.loads((out / "meta.json").read_text())[MARKER] == 1


def test_an_empty_existing_folder_is_used(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert len(run(out)) == 4


def test_a_run_directory_is_marked_as_linksims_from_its_start(tmp_path):
    RunDirectory(tmp_path / "r").open(scenario().data, scenario().to_yaml())
    assert json.loads((tmp_path / "r" / "meta.json").read_text()) [MARKER] == 1
    assert RunDirectory(tmp_path / "r").owned()


def test_a_run_directory_of_an_earlier_linksim_without_the_mark_still_resumes(tmp_path):
    out = tmp_path / "old"
    run(out)
    meta = json.loads((out / "meta.json").read_text())
    del meta[MARKER]
    (out / "meta.json").write_text(json.dumps(meta))
    before = (out / RESULTS).read_text()
    df = run(out)
    assert len(df) == 4 and (out / RESULTS).read_text() == before


@pytest.mark.parametrize("name", ["../escape", "../../etc/x", "/tmp/abs", "a/b", "..", ".", "", "~root",
                                  "a\\b", "nul\0byte"])
def test_a_scenario_name_that_would_leave_runs_is_refused(tmp_path, name):
    with pytest.raises(RunError, match="cannot name a folder under"):
        default_run_dir(name, root=tmp_path / "runs")
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/linksim_hostile_abs_name", "sub/dir"])
def test_a_run_without_out_refuses_a_name_that_leaves_runs(tmp_path, monkeypatch, capsys, name):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    scen = work / "s.yaml"
    scen.write_text(YAML.format(name=f'"{name}"'))
    assert main(["run", str(scen), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "name" in err
    assert not (tmp_path / "a" / "escaped").exists() and not (work / "runs" / "sub").exists()
    assert not __import__("os").path.exists("/tmp/linksim_hostile_abs_name")


def test_plain_scenario_names_map_under_runs(tmp_path):
    assert default_run_dir("awgn_sscc", root="runs").as_posix() == "runs/awgn_sscc"
    assert default_run_dir("a..b v2", quick=True, root="runs").as_posix() == "runs/a..b v2_quick"


def test_labels_whose_file_names_collide_keep_their_own_example_images(tmp_path):
    out = tmp_path / "collide"
    run(out)
    point = {"snr_db": 10.0}
    a, b = example_path(out, "A+B", point), example_path(out, "A B", point)
    assert a != b and a.exists() and b.exists()
    d = RunDirectory(tmp_path / "direct")
    d.path.mkdir()
    d.write_examples("A+B", point, np.zeros((1, 2, 2, 1)))
    d.write_examples("A B", point, np.ones((1, 2, 2, 1)))
    assert np.load(example_path(d.path, "A+B", point)).max() == 0
    assert np.load(example_path(d.path, "A B", point)).min() == 1


def test_a_failed_run_does_not_block_the_corrected_rerun(tmp_path, capsys):
    # a failure validate cannot see: an image that is cut off, found when the images are decoded
    import io

    import numpy as np
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i in range(20):
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (16, 16, 3), np.uint8)).save(buf, "PNG")
        data = buf.getvalue()
        (images / f"{i}.png").write_bytes(data[: len(data) // 2] if i == 5 else data)  # header intact, pixels cut
    bad = tmp_path / "s.yaml"
    bad.write_text(YAML.format(name="fix_me").replace("{name: embedded, test_size: 2}",
                                                      f"{{name: image_folder, test_size: 1, params: {{path: {images}}}}}"))
    out = tmp_path / "out"
    assert main(["run", str(bad), "--out", str(out), "--no-progress"]) == 2
    assert "5.png" in capsys.readouterr().err
    assert (out / "scenario.yaml").exists() and not (out / RESULTS).exists()
    bad.write_text(YAML.format(name="fix_me"))
    capsys.readouterr()
    assert main(["run", str(bad), "--out", str(out), "--no-progress"]) == 0
    assert "test_size: 2" in (out / "scenario.yaml").read_text()


def test_a_different_scenario_with_computed_points_is_still_refused(tmp_path):
    out = tmp_path / "done"
    run(out)
    before = snapshot(out)
    with pytest.raises(RunError, match="different scenario"):
        run(out, scenario(seed=9))
    assert snapshot(out) == before


def test_the_cli_refuses_a_foreign_out_with_exit_2_and_no_traceback(tmp_path, capsys):
    scen = tmp_path / "s.yaml"
    scen.write_text(YAML.format(name="cli"))
    out = tmp_path / "foreign"
    out.mkdir()
    (out / "results.csv").write_text("a,b\n1,2\n")
    assert main(["run", str(scen), "--out", str(out), "--overwrite", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "did not write" in err and "Traceback" not in err
    assert (out / "results.csv").read_text() == "a,b\n1,2\n"


def test_results_without_their_scenario_yaml_are_not_overwritten(tmp_path):
    out = tmp_path / "lost_yaml"
    run(out)
    (out / "scenario.yaml").unlink()
    before = (out / RESULTS).read_text()
    with pytest.raises(RunError, match="no scenario.yaml"):
        run(out)
    assert (out / RESULTS).read_text() == before


def test_an_examples_folder_that_links_elsewhere_is_never_written_through(tmp_path):
    out = tmp_path / "out"
    run(out)
    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    import shutil

    shutil.rmtree(out / "examples")
    (out / "examples").symlink_to(foreign)
    (out / RESULTS).unlink()  # so the rerun would write example images again
    with pytest.raises(RunError, match="examples is a symbolic link"):
        run(out)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("name", [RESULTS, "meta.json", "scenario.yaml"])
def test_a_run_file_that_is_a_folder_is_a_clean_error(tmp_path, name):
    out = tmp_path / "out"
    run(out)
    target = out / name
    target.unlink()
    target.mkdir()
    with pytest.raises(RunError, match=f"{name} is a folder, where linksim keeps its {name} file"):
        run(out)


def test_an_unreadable_run_scenario_says_so_not_that_it_is_a_different_scenario(tmp_path):
    out = tmp_path / "out"
    run(out)
    (out / "scenario.yaml").write_bytes(bytes(range(256)))
    before = snapshot(out)
    with pytest.raises(RunError, match="scenario.yaml cannot be read as a scenario"):
        run(out)
    assert snapshot(out) == before


def test_an_empty_out_is_an_error_not_the_default_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    scen = tmp_path / "s.yaml"
    scen.write_text(YAML.format(name="empty_out"))
    assert main(["run", str(scen), "--out", "", "--no-progress"]) == 2
    assert "--out is empty" in capsys.readouterr().err and not (tmp_path / "runs").exists()
