"""Hostile model stores: a store that is a file or cannot be written, cards that are JSON but not
objects, corrupted model files (with and without a valid copy in a later store)."""

import json
import os
import warnings

import keras
import numpy as np
import pytest

from linksim.run.directory import RunError
from linksim.store import ModelStore, model_file_problem

from files_helpers import refuse_writes_in

SPEC = {"what": "tiny", "seed": 1}


def tiny_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((3,))
    return keras.Model(inp, keras.layers.Dense(2)(inp))


def saved(root, model=None):
    store = ModelStore([root])
    return store.save("tiny", SPEC, model or tiny_model(), {"loss": [1.0]}, {"epochs_run": 1})


def test_a_store_that_is_a_file_is_a_clean_error_before_training(tmp_path):
    f = tmp_path / "store"
    f.write_text("not a folder")
    with pytest.raises(RunError, match=r"model store .*store is a file, not a folder.*LINKSIM_MODEL_STORE"):
        ModelStore([f]).entry("tiny", SPEC)
    assert f.read_text() == "not a folder"


def test_a_store_under_a_file_is_a_clean_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(RunError, match="cannot be written"):
        ModelStore([f / "sub"]).entry("tiny", SPEC)


def test_a_store_that_cannot_be_written_is_a_clean_error(tmp_path, monkeypatch):
    root = tmp_path / "ro"
    root.mkdir()
    refuse_writes_in(monkeypatch, root)
    with pytest.raises(RunError, match="cannot be written \\(Permission denied\\)"):
        ModelStore([root]).entry("tiny", SPEC)


def test_a_search_store_that_is_a_file_is_skipped_with_a_warning(tmp_path):
    f = tmp_path / "store"
    f.write_text("x")
    good = tmp_path / "good"
    saved(good)
    with pytest.warns(UserWarning, match="is a file, not a folder; it is skipped"):
        model, entry = ModelStore([f, good]).load("tiny", SPEC)
    assert model is not None and entry.path.parent == good
    with pytest.warns(UserWarning, match="skipped"):
        assert [c["name"] for c in ModelStore([f, good]).list()] == ["tiny"]


def test_an_unreadable_store_is_skipped_with_a_warning(tmp_path, monkeypatch):
    root = tmp_path / "locked"
    root.mkdir()
    real = os.listdir

    def deny(path="."):
        if str(path) == str(root):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "listdir", deny)
    with pytest.warns(UserWarning, match="cannot be read \\(Permission denied\\); it is skipped"):
        assert ModelStore([root]).load("tiny", SPEC) == (None, None)


@pytest.mark.parametrize("content", ["[1, 2, 3]", "\"a string\"", "42", "null"])
def test_a_card_that_is_json_but_not_an_object_is_not_used(tmp_path, content):
    e = saved(tmp_path)
    e.card_file.write_text(content)
    with pytest.warns(UserWarning, match="unreadable card .*not an object"):
        assert ModelStore([tmp_path]).find("tiny", SPEC) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ModelStore([tmp_path]).list()[0]["error"] == "unreadable card"


@pytest.mark.parametrize("damage, cause", [
    (lambda b: b"", "empty"),
    (lambda b: b[: len(b) // 2], "truncated or corrupted"),
    (lambda b: b"garbage" * 100, "not a .keras zip archive"),
])
def test_a_corrupted_model_is_reported_with_its_real_cause_not_file_not_found(tmp_path, damage, cause):
    e = saved(tmp_path)
    e.model_file.write_bytes(damage(e.model_file.read_bytes()))
    with pytest.warns(UserWarning) as rec:
        assert ModelStore([tmp_path]).load("tiny", SPEC) == (None, None)
    text = " ".join(str(w.message) for w in rec)
    assert cause in text and str(e.model_file) in text
    assert "File not found" not in text


def test_a_corrupted_model_uses_the_valid_copy_of_a_later_store_with_a_warning(tmp_path):
    first, second = tmp_path / "user", tmp_path / "shipped"
    model = tiny_model()
    bad = saved(first, model)
    saved(second, model)
    bad.model_file.write_bytes(bad.model_file.read_bytes()[:100])
    with pytest.warns(UserWarning) as rec:
        loaded, entry = ModelStore([first, second]).load("tiny", SPEC)
    assert entry.path.parent == second
    x = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))
    text = " ".join(str(w.message) for w in rec)
    assert "cannot be loaded" in text and "using the valid copy" in text


def test_a_valid_model_file_has_no_problem(tmp_path):
    e = saved(tmp_path)
    assert model_file_problem(e.model_file) is None
    assert json.loads(e.card_file.read_text())["key"]
