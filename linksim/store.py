"""The model store: trained models keyed by everything that changes their weights.

A stored model is a folder ``<name>-<key>/`` holding

- ``model.keras``: the Keras model (every linksim layer is registered for serialisation);
- ``card.json``: what the model is: the spec that was hashed into the key
  (scheme config, data set, training size, channel uses, SNR_train, seed, epochs),
  the final validation PSNR, the epochs actually run, the linksim version and the
  date;
- ``history.json``: per-epoch training loss, validation loss and PSNR, learning rate;
- ``checkpoints/`` (while training): the state of an unfinished training run,
  from which ``linksim train`` resumes.

Large constant arrays that several models hold (the PCA basis of every
PCA-DeepJSCC model trained on one data set) are stored once per store, content
addressed, in ``<root>/shared/<sha256>.npy`` (the SHA-256 covers dtype, shape and
bytes). A layer opts in (:func:`save_sharing_variables`,
:func:`load_sharing_variables`; :class:`~linksim.schemes.deepjscc_pca.PCACode`
does for its ``basis``): while :meth:`ModelStore.save` writes a model, such a
variable is written to ``<write root>/shared/`` and ``model.keras`` holds only a
reference to it (its digest); while :meth:`ModelStore.load` reads one, the
reference is resolved in ``<root>/shared/`` of every root, in order, and the
content hash of what is read is checked. The context is a
:class:`contextvars.ContextVar` (:func:`shared_arrays`). Outside it (a user's
``model.save``, training checkpoints) arrays are written inline as usual, and a
``keras.saving.load_model`` of a stored model resolves references in the
default store's ``shared/`` folders (which include the shipped weights'). An
archive with the array inline (written before sharing, or outside a store) loads
as before. ``shared/`` is not a model folder: :meth:`ModelStore.list` skips it.

The key is the first 16 hex digits of the SHA-256 of the canonical JSON of the
spec, so two scenarios that ask for the same model share it, and any change to
what determines the weights gives a new key.

Stores are searched in order: the user store (``$LINKSIM_MODEL_STORE`` or
``~/.cache/linksim/models``), then the weights that ship with linksim
(``linksim/weights/``). New models are written to the first store, which must be a
folder linksim can create and write (else a :class:`~linksim.run.directory.RunError`
before any training).  A store folder that is a file or cannot be read is skipped
with a warning.  A stored model that cannot be loaded (a corrupted ``model.keras``,
a card that is not a JSON object or does not match its key) is reported with a
warning naming the real cause; the next store holding a valid copy is used, and
when none does the model is trained again.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import shutil
import warnings
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from linksim import __version__

__all__ = ["ModelStore", "StoredModel", "spec_key", "default_store", "model_file_problem", "SHIPPED_DIR",
           "SHARED_DIR_NAME", "SharedArrayError", "shared_arrays", "array_digest", "put_shared_array",
           "get_shared_array", "save_sharing_variables", "load_sharing_variables"]

SHIPPED_DIR = Path(__file__).resolve().parent / "weights"
SHARED_DIR_NAME = "shared"


def spec_key(spec: dict) -> str:
    """16 hex digits of the SHA-256 of ``spec``'s canonical JSON."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class StoredModel:
    """A folder of the store (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def model_file(self) -> Path:
        return self.path / "model.keras"

    @property
    def card_file(self) -> Path:
        return self.path / "card.json"

    @property
    def history_file(self) -> Path:
        return self.path / "history.json"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def log_dir(self) -> Path:
        """TensorBoard logs of the model's training (``tensorboard --logdir`` this folder); kept after saving."""
        return self.path / "logs"

    def card(self) -> dict:
        """The card as a dict.

        Raises
        ------
        OSError
            The file cannot be read.
        ValueError
            It is not JSON, or not a JSON object.
        """
        card = json.loads(self.card_file.read_text())
        if not isinstance(card, dict):
            raise ValueError(f"card.json holds a JSON {type(card).__name__}, not an object")
        return card

    def complete(self) -> bool:
        try:
            return self.model_file.is_file() and self.card_file.is_file()
        except OSError:  # an unreadable folder
            return False


def model_file_problem(path) -> str | None:
    """Why ``path`` is not a loadable ``.keras`` file (empty, not a zip archive, ...), or None."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            return "the file is empty (0 bytes)"
        if not zipfile.is_zipfile(path):
            return f"the file ({size} bytes) is not a .keras zip archive: it is truncated or corrupted"
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            names = set(z.namelist())
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        return f"the .keras zip archive is damaged ({exc})"
    if bad is not None:
        return f"the .keras zip archive is damaged (member {bad} fails its checksum)"
    if "config.json" not in names:
        return "the .keras zip archive has no config.json (not a Keras model file)"
    return None


# --------------------------------------------------------------------------- shared arrays

class SharedArrayError(OSError):
    """A shared array a model refers to is missing from every folder searched, or its content is damaged."""


# (folder written to or None, folders read from in order) while a store saves or loads a model
_SHARED_ARRAYS: contextvars.ContextVar = contextvars.ContextVar("linksim_shared_arrays", default=None)
_REFERENCE_PREFIX = b"linksim-shared-array:sha256:"


@contextlib.contextmanager
def shared_arrays(write_dir=None, read_dirs=()):
    """Within the block, shared variables are written to ``write_dir`` and resolved in ``read_dirs``.

    Input
    -----
    write_dir : path or None, where :func:`put_shared_array` writes (None: opted-in
        variables are saved inline)
    read_dirs : paths, where :func:`get_shared_array` searches, in order
    """
    token = _SHARED_ARRAYS.set((None if write_dir is None else Path(write_dir), [Path(d) for d in read_dirs]))
    try:
        yield
    finally:
        _SHARED_ARRAYS.reset(token)


def _shared_context():
    """(write folder or None, read folders): the active context's, else no writing and the default store's."""
    ctx = _SHARED_ARRAYS.get()
    if ctx is not None:
        return ctx
    return None, [root / SHARED_DIR_NAME for root in default_store().roots]


def array_digest(array) -> str:
    """SHA-256 (64 hex digits) of an array's dtype, shape and C-order bytes."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.dtype.str}{list(a.shape)}\n".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def put_shared_array(array, folder=None) -> str:
    """Write ``array`` once as ``<folder>/<digest>.npy`` (atomically; kept if present and intact); its digest.

    Input
    -----
    array : array-like
    folder : path or None, the active context's write folder when None

    Output
    ------
    digest : str, :func:`array_digest` of ``array``

    Raises
    ------
    SharedArrayError
        No folder given and no context with a write folder is active.
    OSError
        The file cannot be written.
    """
    a = np.ascontiguousarray(array)
    if folder is None:
        folder = _shared_context()[0]
        if folder is None:
            raise SharedArrayError("no shared-array folder to write to (not inside a model store's save)")
    folder = Path(folder)
    digest = array_digest(a)
    path = folder / f"{digest}.npy"
    if path.is_file() and _read_checked(path, digest)[1] is None:
        return digest
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{digest}.{os.getpid()}.tmp.npy"
    try:
        with open(tmp, "wb") as f:
            np.save(f, a, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return digest


def _read_checked(path: Path, digest: str):
    """(array, None) if ``path`` holds the array of ``digest``, else (None, why not)."""
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        return None, f"{path} cannot be read ({exc})"
    if array_digest(a) != digest:
        return None, f"{path} is corrupted (its content hashes to {array_digest(a)[:16]}...)"
    return a, None


def get_shared_array(digest: str, folders=None):
    """The array stored under ``digest``: the first intact ``<folder>/<digest>.npy``.

    Input
    -----
    digest : str, 64 hex digits (:func:`array_digest`)
    folders : paths or None, the active context's read folders (else the default
        store's ``shared/`` folders) when None

    Output
    ------
    np.ndarray whose :func:`array_digest` is ``digest``

    Raises
    ------
    SharedArrayError
        No folder holds an intact copy (the message names the digest, the folders
        searched and any copy that is damaged).
    """
    if folders is None:
        folders = _shared_context()[1]
    folders = [Path(f) for f in folders]
    problems = []
    for folder in folders:
        path = folder / f"{digest}.npy"
        if not path.is_file():
            continue
        a, problem = _read_checked(path, digest)
        if problem is None:
            return a
        problems.append(problem)
    searched = ", ".join(str(f) for f in folders) or "none"
    damaged = f"; {'; '.join(problems)}" if problems else ""
    raise SharedArrayError(f"shared array {digest} not found intact (folders searched: {searched}){damaged}; "
                           "the model file refers to it: copy its shared/ folder along with the model")


def _reference(digest: str):
    return np.frombuffer(_REFERENCE_PREFIX + digest.encode("ascii"), np.uint8).copy()


def _referenced_digest(value) -> str | None:
    """The digest a stored entry refers to, or None when it is the array itself."""
    value = np.asarray(value)
    if value.dtype != np.uint8 or value.ndim != 1 or value.size != len(_REFERENCE_PREFIX) + 64:
        return None
    raw = value.tobytes()
    return raw[len(_REFERENCE_PREFIX):].decode("ascii") if raw.startswith(_REFERENCE_PREFIX) else None


def save_sharing_variables(layer, store, shared) -> None:
    """A layer's ``save_own_variables`` with the variables named in ``shared`` stored as shared arrays.

    As Keras's (entry ``str(i)`` for the i-th of the trainable then non-trainable
    variables); inside a store's save (:func:`shared_arrays` with a write folder) a
    shared variable's entry is a reference (a uint8 array: a prefix and the
    digest), so the number of entries is unchanged; elsewhere it is the array.

    Input
    -----
    layer : keras.layers.Layer
    store : the Keras weights store of the layer
    shared : names (``variable.name``) of the variables to share
    """
    write_dir = _shared_context()[0]
    for i, v in enumerate(layer._trainable_variables + layer._non_trainable_variables):
        if write_dir is not None and v.name in shared:
            store[f"{i}"] = _reference(put_shared_array(np.asarray(v), write_dir))
        else:
            store[f"{i}"] = v


def load_sharing_variables(layer, store) -> None:
    """A layer's ``load_own_variables`` resolving references written by :func:`save_sharing_variables`.

    An entry that is the array itself (an archive written outside a store, or
    before sharing) is assigned as Keras does.

    Raises
    ------
    ValueError
        The number of entries is not the layer's number of variables (Keras's check).
    SharedArrayError
        A referenced array is missing or damaged (:func:`get_shared_array`).
    """
    layer._check_load_own_variables(store)
    for i, v in enumerate(layer._trainable_variables + layer._non_trainable_variables):
        value = store[f"{i}"]
        digest = _referenced_digest(value)
        v.assign(value if digest is None else get_shared_array(digest))


# --------------------------------------------------------------------------- the store

class ModelStore:
    """Search and write trained models.

    Parameters
    ----------
    roots : list of paths
        Stores to search, in order; the first is written to.
    """

    def __init__(self, roots):
        self.roots = [Path(os.path.expanduser(str(r))) for r in roots]
        if not self.roots:
            raise ValueError("a model store needs at least one folder")
        self._shared = None   # {(file, mtime_ns, size): model} inside sharing_loaded_models()

    @contextlib.contextmanager
    def sharing_loaded_models(self):
        """Within the block, :meth:`load` returns the same model object for the same unchanged file.

        A run that sweeps the channel prepares each scheme once per chain; loading its
        model once saves a quarter of a second per (scheme, chain). Safe because
        linksim never trains a loaded model in place (a later stage copies its
        weights into a new model).
        """
        outer = self._shared
        self._shared = {} if outer is None else outer
        try:
            yield self
        finally:
            self._shared = outer

    @property
    def write_root(self) -> Path:
        return self.roots[0]

    def sharing_arrays(self):
        """The :func:`shared_arrays` context of this store: write to the write root's, read every root's ``shared/``."""
        return shared_arrays(self.write_root / SHARED_DIR_NAME, [r / SHARED_DIR_NAME for r in self.roots])

    def check_writable(self) -> Path:
        """The write root, created if missing.

        Raises
        ------
        RunError
            It is a file, or cannot be created or written (the message names it).
        """
        from linksim.run.directory import RunError, writable_folder_problem

        root = self.write_root
        problem = writable_folder_problem(root)
        if problem is not None:
            what, reason = problem
            how = ("set LINKSIM_MODEL_STORE (or give --store) to a folder you can write; the first store is "
                   "--store DIR, else $LINKSIM_MODEL_STORE, else ~/.cache/linksim/models")
            raise RunError(f"model store {root} {reason if what == 'file' else f'cannot be written ({reason})'}; "
                           f"{how}")
        return root

    def _readable(self, root: Path) -> bool:
        """Whether ``root`` can be searched; a store that is a file or unreadable is skipped with a warning."""
        try:
            if not root.exists():
                return False
            if not root.is_dir():
                warnings.warn(f"model store {root} is a file, not a folder; it is skipped", stacklevel=3)
                return False
            os.listdir(root)
        except OSError as exc:
            warnings.warn(f"model store {root} cannot be read ({exc.strerror or exc}); it is skipped",
                          stacklevel=3)
            return False
        return True

    def folder_name(self, name: str, key: str) -> str:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:60]
        return f"{safe}-{key}"

    def entry(self, name: str, spec: dict) -> StoredModel:
        """Where a model of ``spec`` is written (in the write root, checked by :meth:`check_writable`)."""
        return StoredModel(self.check_writable() / self.folder_name(name, spec_key(spec)))

    def candidates(self, name: str, spec: dict):
        """Every complete stored model for ``spec`` whose card matches, store by store (a generator).

        A card that cannot be read, is not a JSON object or describes another model is
        skipped with a warning.
        """
        key = spec_key(spec)
        for root in self.roots:
            if not self._readable(root):
                continue
            e = StoredModel(root / self.folder_name(name, key))
            if not e.complete():
                continue
            try:
                card = e.card()
            except (OSError, ValueError) as exc:
                warnings.warn(f"stored model {e.path} has an unreadable card ({exc}); it is not used",
                              stacklevel=3)
                continue
            if card.get("key") != key or card.get("spec") != json.loads(json.dumps(spec, default=str)):
                warnings.warn(f"stored model {e.path} does not match its key (its card describes another "
                              f"model); it is not used", stacklevel=3)
                continue
            yield e

    def find(self, name: str, spec: dict) -> StoredModel | None:
        """The first complete stored model for ``spec`` whose card matches, or None."""
        return next(self.candidates(name, spec), None)

    def load(self, name: str, spec: dict):
        """The Keras model stored for ``spec`` and its entry, or ``(None, None)``.

        Stores are tried in order: a model file that fails to load gives a warning
        naming the real cause (empty, truncated, not a ``.keras`` archive, ...) and the
        next store's copy is tried; ``(None, None)`` when no copy loads, so the caller
        trains it again.
        """
        import keras

        failed = []
        for e in self.candidates(name, spec):
            memo_key = None
            if self._shared is not None:
                try:
                    st = e.model_file.stat()
                    memo_key = (str(e.model_file), st.st_mtime_ns, st.st_size)
                except OSError:
                    pass
                if memo_key in self._shared:
                    return self._shared[memo_key], e
            problem = model_file_problem(e.model_file)
            model = None
            if problem is None:
                try:
                    with self.sharing_arrays():
                        model = keras.saving.load_model(e.model_file, compile=False)
                except Exception as exc:  # incompatible or damaged inside: try the next copy
                    problem = f"{type(exc).__name__}: {exc}"
            if model is None:
                failed.append(e.model_file)
                warnings.warn(f"stored model {e.model_file} cannot be loaded ({problem}); "
                              "trying the next store's copy, else it will be retrained", stacklevel=2)
                continue
            if failed:
                warnings.warn(f"using the valid copy {e.model_file} of the damaged {failed[0]}", stacklevel=2)
            if memo_key is not None:
                self._shared[memo_key] = model
            return model, e
        return None, None

    def save(self, name: str, spec: dict, model, history: dict, facts: dict) -> StoredModel:
        """Write ``model`` with its card and history (atomically: a folder is complete or absent)."""
        e = self.entry(name, spec)
        e.path.mkdir(parents=True, exist_ok=True)
        tmp = e.path / "model.keras.tmp.keras"
        with self.sharing_arrays():
            model.save(tmp)
        deflate_keras_file(tmp)
        os.replace(tmp, e.model_file)
        e.history_file.write_text(json.dumps(history, indent=1))
        card = {"name": name, "key": spec_key(spec), "spec": json.loads(json.dumps(spec, default=str)),
                **facts, "linksim_version": __version__,
                "saved": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        e.card_file.write_text(json.dumps(card, indent=2))
        if e.checkpoint_dir.exists():
            shutil.rmtree(e.checkpoint_dir, ignore_errors=True)
        return e

    def list(self) -> list[dict]:
        """Cards of every complete stored model, with ``path`` added."""
        out = []
        for root in self.roots:
            if not self._readable(root):
                continue
            for d in sorted(root.iterdir()):
                if d.name == SHARED_DIR_NAME:  # the shared arrays, not a model
                    continue
                e = StoredModel(d)
                if e.complete():
                    try:
                        card = e.card()
                    except (OSError, ValueError):
                        card = {"name": d.name, "error": "unreadable card"}
                    card["path"] = str(d)
                    out.append(card)
        return out


def default_store(extra_root: str | os.PathLike | None = None) -> ModelStore:
    """The user store (``$LINKSIM_MODEL_STORE`` or ``~/.cache/linksim/models``), then the shipped weights.

    ``extra_root``, when given, is searched and written first (``linksim train --store DIR``).
    """
    user = os.environ.get("LINKSIM_MODEL_STORE") or os.path.join("~", ".cache", "linksim", "models")
    roots = ([extra_root] if extra_root else []) + [user, SHIPPED_DIR]
    return ModelStore(roots)


def deflate_keras_file(path) -> None:
    """Re-pack a ``.keras`` archive with DEFLATE, in place (Keras writes its members uncompressed).

    The members are unchanged (checked), so the model loads the same; float32
    weights shrink by about 10-17 %, which keeps the shipped models within the
    repository's weights budget. An archive already deflated is left alone.
    """
    import zipfile

    path = Path(path)
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        if all(i.compress_type == zipfile.ZIP_DEFLATED for i in infos):
            return
        members = [(i.filename, z.read(i.filename)) for i in infos]
    tmp = path.with_name(path.name + ".deflate")
    with zipfile.ZipFile(tmp, "w") as z:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))  # a fixed time: same bytes, same file
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data, compresslevel=9)
    with zipfile.ZipFile(tmp) as z:
        same = [(n, z.read(n)) for n in z.namelist()] == members
    if not same:  # pragma: no cover - zipfile is exact
        tmp.unlink()
        raise OSError(f"re-packing {path} changed its contents")
    os.replace(tmp, path)
