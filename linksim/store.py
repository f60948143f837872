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
(``linksim/weights/``). New models are written to the first (writable) store.
A stored model that cannot be loaded, or whose card does not match its key, is
reported with a warning and trained again rather than used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from datetime import datetime, timezone
from pathlib import Path

from linksim import __version__

__all__ = ["ModelStore", "StoredModel", "spec_key", "default_store", "SHIPPED_DIR"]

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
        return json.loads(self.card_file.read_text())

    def complete(self) -> bool:
        return self.model_file.exists() and self.card_file.exists()


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

    @property
    def write_root(self) -> Path:
        return self.roots[0]

    def folder_name(self, name: str, key: str) -> str:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:60]
        return f"{safe}-{key}"

    def entry(self, name: str, spec: dict) -> StoredModel:
        """Where a model of ``spec`` is written (in the write root)."""
        return StoredModel(self.write_root / self.folder_name(name, spec_key(spec)))

    def find(self, name: str, spec: dict) -> StoredModel | None:
        """The first complete stored model for ``spec`` whose card matches, or None."""
        key = spec_key(spec)
        for root in self.roots:
            e = StoredModel(root / self.folder_name(name, key))
            if not e.complete():
                continue
            try:
                card = e.card()
            except (OSError, ValueError) as exc:
                warnings.warn(f"stored model {e.path} has an unreadable card ({exc}); it will be retrained",
                              stacklevel=2)
                continue
            if card.get("key") != key or card.get("spec") != json.loads(json.dumps(spec, default=str)):
                warnings.warn(f"stored model {e.path} does not match its key (its card describes another "
                              f"model); it will be retrained", stacklevel=2)
                continue
            return e
        return None

    def load(self, name: str, spec: dict):
        """The Keras model stored for ``spec`` and its entry, or ``(None, None)``.

        A model file that fails to load gives a warning and ``(None, None)``,
        so the caller trains it again.
        """
        import keras

        e = self.find(name, spec)
        if e is None:
            return None, None
        try:
            model = keras.saving.load_model(e.model_file, compile=False)
        except Exception as exc:  # corrupted or incompatible file: retrain rather than use it
            warnings.warn(f"stored model {e.model_file} cannot be loaded ({type(exc).__name__}: {exc}); "
                          f"it will be retrained", stacklevel=2)
            return None, None
        return model, e

    def save(self, name: str, spec: dict, model, history: dict, facts: dict) -> StoredModel:
        """Write ``model`` with its card and history (atomically: a folder is complete or absent)."""
        e = self.entry(name, spec)
        e.path.mkdir(parents=True, exist_ok=True)
        tmp = e.path / "model.keras.tmp.keras"
        model.save(tmp)
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
            if not root.is_dir():
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
