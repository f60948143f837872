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
import hashlib
import json
import os
import shutil
import warnings
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from linksim import __version__

__all__ = ["ModelStore", "StoredModel", "spec_key", "default_store", "model_file_problem", "SHIPPED_DIR"]

SHIPPED_DIR = Path(__file__).resolve().parent / "weights"


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
