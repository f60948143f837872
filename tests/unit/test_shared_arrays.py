"""Content-addressed shared arrays of the model store (linksim/store.py): the PCA basis is stored once per store."""

from __future__ import annotations

import io
import zipfile

import h5py
import keras
import numpy as np
import pytest

from linksim.schemes.deepjscc_pca import PCACode
from linksim.store import (SHARED_DIR_NAME, SHIPPED_DIR, ModelStore, SharedArrayError, array_digest,
                           get_shared_array, put_shared_array, shared_arrays)

SPEC = {"what": "a PCA code", "n": 12, "m": 5}


def _code_model(seed: int, basis=None, n: int = 12, m: int = 5):
    """A tiny model holding a PCACode whose weights are drawn from ``seed`` (basis: ``basis`` if given)."""
    rng = np.random.default_rng(seed)
    x = keras.Input((n,))
    code = PCACode(n, m, name="code")
    model = keras.Model(x, code(x))
    code.mean.assign(rng.normal(size=n).astype(np.float32))
    code.variances.assign(np.sort(rng.random(m).astype(np.float32))[::-1])
    code.basis.assign(rng.normal(size=(n, m)).astype(np.float32) if basis is None else basis)
    code.header.assign(rng.random(2).astype(np.float32))
    return model


def _save(store, name, model):
    return store.save(name, SPEC, model, history={}, facts={})


def _stored_basis_entry(model_file):
    """The ``basis`` entry (``code/vars/2``) of a ``.keras`` archive's weights file."""
    with zipfile.ZipFile(model_file) as z:
        with h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as h:
            names = []
            h.visit(names.append)
            (name,) = [n for n in names if n.endswith("code/vars/2")]
            return np.asarray(h[name])


def _weights_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))


def test_two_models_with_one_basis_share_one_file_and_load_bit_identical(tmp_path):
    basis = np.random.default_rng(9).normal(size=(12, 5)).astype(np.float32)
    a, b = _code_model(1, basis), _code_model(2, basis)
    store = ModelStore([tmp_path])
    ea, eb = _save(store, "first", a), _save(store, "second", b)
    shared = sorted((tmp_path / SHARED_DIR_NAME).iterdir())
    assert [p.name for p in shared] == [f"{array_digest(basis)}.npy"]
    for e in (ea, eb):  # the archive holds a reference, not the array
        entry = _stored_basis_entry(e.model_file)
        assert entry.dtype == np.uint8 and array_digest(basis).encode() in entry.tobytes()
    loaded_a, _ = store.load("first", SPEC)
    loaded_b, _ = store.load("second", SPEC)
    assert _weights_equal(loaded_a, a) and _weights_equal(loaded_b, b)
    assert np.array_equal(loaded_a.get_layer("code").basis.numpy(), loaded_b.get_layer("code").basis.numpy())
    assert [c["name"] for c in store.list()] == ["first", "second"]  # shared/ is not a model


@pytest.mark.filterwarnings("ignore:Skipping nested container")  # Keras, after the failed load
def test_a_missing_shared_file_is_an_error_naming_the_digest_and_the_folders(tmp_path):
    store = ModelStore([tmp_path / "a"])
    e = _save(store, "m", _code_model(3))
    digest = array_digest(_code_model(3).get_layer("code").basis.numpy())
    (tmp_path / "a" / SHARED_DIR_NAME / f"{digest}.npy").unlink()
    with pytest.raises(ValueError, match=digest) as info, shared_arrays(None, [tmp_path / "x", tmp_path / "y"]):
        keras.saving.load_model(e.model_file, compile=False)
    assert str(tmp_path / "x") in str(info.value) and str(tmp_path / "y") in str(info.value)
    with pytest.raises(SharedArrayError, match=f"{digest} not found"):
        get_shared_array(digest, [tmp_path / "a" / SHARED_DIR_NAME])
    with pytest.warns(UserWarning, match=digest):  # the store warns and lets the model be trained again
        assert store.load("m", SPEC) == (None, None)


def test_a_corrupted_shared_file_is_detected_and_an_intact_copy_in_a_later_folder_is_used(tmp_path):
    basis = np.arange(60, dtype=np.float32).reshape(12, 5)
    digest = put_shared_array(basis, tmp_path / "one")
    put_shared_array(basis, tmp_path / "two")
    path = tmp_path / "one" / f"{digest}.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1  # one bit of the last float
    path.write_bytes(bytes(raw))
    with pytest.raises(SharedArrayError, match="corrupted"):
        get_shared_array(digest, [tmp_path / "one"])
    assert np.array_equal(get_shared_array(digest, [tmp_path / "one", tmp_path / "two"]), basis)
    # writing it again repairs the damaged copy
    assert put_shared_array(basis, tmp_path / "one") == digest
    assert np.array_equal(get_shared_array(digest, [tmp_path / "one"]), basis)


def test_the_digest_covers_dtype_and_shape():
    x = np.zeros(6, np.float32)
    assert len({array_digest(x), array_digest(x.reshape(2, 3)), array_digest(x.view(np.int32))}) == 3


def test_an_archive_with_the_basis_inline_still_loads(tmp_path):
    model = _code_model(4)
    path = tmp_path / "inline.keras"
    model.save(path)  # outside a store: the old format, the basis in the archive
    assert _stored_basis_entry(path).dtype == np.float32
    assert _weights_equal(keras.saving.load_model(path, compile=False), model)
    # and through a store (its shared/ folder does not exist)
    with shared_arrays(tmp_path / SHARED_DIR_NAME, [tmp_path / SHARED_DIR_NAME]):
        assert _weights_equal(keras.saving.load_model(path, compile=False), model)
    assert not (tmp_path / SHARED_DIR_NAME).exists()


def test_a_shipped_pca_model_loads_with_keras_alone():
    # outside a store's load the default store's shared/ folders (the shipped one among them) are searched
    path = sorted(SHIPPED_DIR.glob("deepjscc_pca-*/model.keras"))[0]
    model = keras.saving.load_model(path, compile=False)
    basis = model.code.basis.numpy()
    assert basis.shape == (784, 784) and (SHIPPED_DIR / SHARED_DIR_NAME / f"{array_digest(basis)}.npy").is_file()
    assert np.allclose(basis.T @ basis, np.eye(784), atol=1e-4)  # orthonormal principal directions
