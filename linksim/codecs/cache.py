"""The source-coding cache: codec payloads on disk, so re-runs skip the rate-control searches.

Rate control (:func:`linksim.codecs.base.encode_batch`) encodes each image at
several qualities of its codec's ladder (a binary search) and keeps the best
payload that fits the bit budget.  The encoders are deterministic, so a payload
depends only on the image, the codec (its options and code) and the quality.  A
:class:`SourceCache` keeps those payloads on disk: a re-run, a resumed run, a run
with another SNR grid (the ideal code's budget is one per SNR point) or another
scenario with the same codec and test images reads them instead of encoding.

What is cached
--------------
Per-quality payloads, not per-budget results: ``(image, codec, quality) ->
payload``.  Rate control at any budget replays the binary search on cached
payloads, so every budget is cheap once the qualities it visits are known, and a
new budget encodes only the few qualities no earlier search visited.

Key
---
- the image: BLAKE2b of its dtype, shape and bytes (the ``uint8 [H, W, C]`` the
  codec sees);
- the codec: SHA-256 of the canonical JSON of its ``get_config()`` (every
  option), its class, its :attr:`~linksim.codecs.base.ImageCodec.cache_version`
  tag, the digest of the source files of its class and base classes (any edit to
  the codec's code invalidates its entries) and the versions of the libraries
  that encode (Pillow and its libjpeg / libwebp / OpenJPEG, PyAV and its FFmpeg /
  x265), and :data:`FORMAT_VERSION`;
- the quality, inside the entry.

Layout
------
``<folder>/<FORMAT_VERSION>/<codec key>/codec.json`` describes the codec (for a
reader: which folder is which codec); ``<codec key>/<ab>/<image digest>.lsc``
holds one image's ``{quality: payload}`` map (``ab``: the digest's first two hex
digits, so no folder holds more than a few hundred files).  An entry file is
``LSC1``, a 4-byte big-endian header length, a JSON header (codec key, image
digest, qualities and payload lengths), the payloads, and a 16-byte BLAKE2b of
everything before it.

Safety
------
Entries are written to a unique temporary file and renamed into place
(``os.replace``, atomic on POSIX file systems, NFS included), after merging
with what the file holds at that moment; several processes (parallel workers,
Ray workers on shared storage) may read and write the same folder.  Two writers
of the same image may race: the last rename wins and the other's extra qualities
are encoded again later; a reader never sees a partial file.  An entry that
fails its checks (truncated, wrong digest, another image's or codec's, a quality
the codec does not have) is ignored (counted as ``damaged``, one warning) and
its payloads are encoded again and rewritten.  A folder that cannot be written
(read-only shared storage, full disk) gives one warning and the run continues
reading what it can.  Nothing here raises to rate control.

Which folder
------------
:func:`cache_dir_for_run` decides: ``$LINKSIM_SOURCE_CACHE`` (a folder, or
``off``); else ``source_cache/`` inside the model store's write root when that
folder already exists (the user's store is in use, e.g. ``~/.cache/linksim/models``
after a training run, or ``$LINKSIM_MODEL_STORE``); else ``.source_cache/`` in
the run directory, so a fresh clone writes nothing outside its run directory.
Outside :func:`activated` (library use, tests) nothing is cached on disk unless
``$LINKSIM_SOURCE_CACHE`` names a folder.

Clearing: delete the folder (``rm -r ~/.cache/linksim/models/source_cache``); it
is rebuilt as needed.  Stale entries of an old codec version are never read
again (their codec key differs) and can be deleted with the folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import threading
import uuid
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["SourceCache", "FORMAT_VERSION", "ENV_VAR", "SOURCE_CACHE_DIR_NAME", "RUN_CACHE_DIR_NAME",
           "image_digest", "codec_key", "activated", "active", "cache_dir_for_run", "stats"]

#: bumped when the entry format or the key changes
FORMAT_VERSION = "v1"
#: the environment variable that names the cache folder, or ``off``
ENV_VAR = "LINKSIM_SOURCE_CACHE"
#: the cache folder inside a model store's write root
SOURCE_CACHE_DIR_NAME = "source_cache"
#: the cache folder inside a run directory (when no user store exists)
RUN_CACHE_DIR_NAME = ".source_cache"

_OFF = {"off", "0", "false", "no", "none", "disabled"}
_MAGIC = b"LSC1"
_DIGEST_BYTES = 16
_MAX_HEADER = 1 << 20


def image_digest(image: np.ndarray) -> str:
    """40 hex digits: BLAKE2b of an image's dtype, shape and C-order bytes."""
    a = np.ascontiguousarray(image)
    h = hashlib.blake2b(f"{a.dtype.str}{list(a.shape)}\n".encode(), digest_size=20)
    h.update(a.tobytes())
    return h.hexdigest()


@lru_cache(maxsize=None)
def _library_versions() -> tuple:
    """(name, version) of the libraries the codecs encode with (those installed)."""
    out = []
    try:
        import PIL
        from PIL import features

        out.append(("Pillow", PIL.__version__))
        for name in ("jpg", "webp", "jpg_2000"):
            with contextlib.suppress(Exception):
                out.append((name, str(features.version(name))))
    except ImportError:  # pragma: no cover - Pillow is a dependency
        pass
    try:
        import av

        out.append(("av", av.__version__))
        with contextlib.suppress(Exception):
            out.extend(sorted((k, ".".join(str(p) for p in v)) for k, v in av.library_versions.items()))
    except ImportError:  # pragma: no cover - PyAV is a dependency
        pass
    return tuple(out)


@lru_cache(maxsize=None)
def _source_digest(cls) -> str:
    """SHA-256 of the source files of ``cls`` and its base classes (empty parts where there is none)."""
    h = hashlib.sha256()
    seen = set()
    for klass in cls.__mro__:
        if klass is object:
            continue
        try:
            path = inspect.getsourcefile(klass)
        except (TypeError, OSError):
            path = None
        if not path or path in seen:
            continue
        seen.add(path)
        with contextlib.suppress(OSError):
            h.update(Path(path).read_bytes())
    return h.hexdigest()


def codec_spec(codec) -> dict:
    """Everything that determines a codec's payloads (see the module docstring), as a JSON-able dict."""
    cls = type(codec)
    return {"format": FORMAT_VERSION, "config": codec.get_config(),
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "cache_version": str(getattr(codec, "cache_version", "")),
            "source": _source_digest(cls), "libraries": [list(v) for v in _library_versions()]}


def codec_key(codec) -> str:
    """32 hex digits: SHA-256 of the canonical JSON of :func:`codec_spec`."""
    text = json.dumps(codec_spec(codec), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _pack(codec_k: str, image_k: str, payloads: dict) -> bytes:
    items = list(payloads.items())
    header = json.dumps({"codec": codec_k, "image": image_k, "q": [[q, len(p)] for q, p in items]},
                        separators=(",", ":")).encode()
    body = _MAGIC + len(header).to_bytes(4, "big") + header + b"".join(p for _, p in items)
    return body + hashlib.blake2b(body, digest_size=_DIGEST_BYTES).digest()


def _unpack(data: bytes, codec_k: str, image_k: str, qualities: tuple) -> dict:
    """The ``{quality: payload}`` map of an entry file's bytes.

    Raises
    ------
    ValueError
        The bytes are not an intact entry of this codec and image, or name a quality
        the codec does not have.
    """
    if len(data) < len(_MAGIC) + 4 + _DIGEST_BYTES or data[:4] != _MAGIC:
        raise ValueError("not a source-cache entry (bad magic or too short)")
    body, digest = data[:-_DIGEST_BYTES], data[-_DIGEST_BYTES:]
    if hashlib.blake2b(body, digest_size=_DIGEST_BYTES).digest() != digest:
        raise ValueError("checksum mismatch (truncated or corrupted)")
    n = int.from_bytes(body[4:8], "big")
    if n > _MAX_HEADER or 8 + n > len(body):
        raise ValueError("bad header length")
    header = json.loads(body[8:8 + n].decode())
    if not isinstance(header, dict) or header.get("codec") != codec_k or header.get("image") != image_k:
        raise ValueError("the entry belongs to another codec or image")
    known = {q: q for q in qualities}
    out, pos = {}, 8 + n
    for item in header.get("q", []):
        q, length = item
        if isinstance(q, bool) or not isinstance(q, (int, float)) or q not in known:
            raise ValueError(f"quality {q!r} is not one of the codec's")
        if not isinstance(length, int) or length < 0 or pos + length > len(body):
            raise ValueError("a payload runs past the end")
        out[known[q]] = body[pos:pos + length]
        pos += length
    if pos != len(body):
        raise ValueError("trailing bytes after the payloads")
    return out


class SourceCache:
    """Codec payloads per (image, codec, quality) in a folder (see the module docstring).

    Parameters
    ----------
    folder : path
        Where the entries live; created when the first entry is written.
    read_only : bool
        Read entries, never write (default False).

    Attributes
    ----------
    hits : int
        Payloads rate control needed that came from the disk (encodes saved).
    misses : int
        Payloads rate control encoded while this cache was in use.
    """

    def __init__(self, folder, read_only: bool = False):
        self.folder = Path(os.path.expanduser(str(folder)))
        self.read_only = bool(read_only)
        self._lock = threading.Lock()
        self._counts = {"hits": 0, "misses": 0, "entries_read": 0, "entries_written": 0, "damaged": 0,
                        "write_errors": 0, "read_errors": 0}
        self._warned: set = set()
        self._described: set = set()
        self._made: set = set()     # entry folders known to exist

    def __repr__(self) -> str:
        return f"SourceCache({str(self.folder)!r})"

    # -- counters --------------------------------------------------------------

    @property
    def hits(self) -> int:
        return self._counts["hits"]

    @property
    def misses(self) -> int:
        return self._counts["misses"]

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def stats(self) -> dict:
        """``{"path", "hits", "misses", "entries_read", "entries_written", "damaged", "write_errors",
        "read_errors"}`` of this process (JSON-able; for a run's ``meta.json``)."""
        with self._lock:
            return {"path": str(self.folder), **self._counts}

    def _warn_once(self, kind: str, msg: str) -> None:
        with self._lock:
            if kind in self._warned:
                return
            self._warned.add(kind)
        warnings.warn(msg, stacklevel=4)

    # -- entries ---------------------------------------------------------------

    def entry_path(self, codec_k: str, image_k: str) -> Path:
        return self.folder / FORMAT_VERSION / codec_k / image_k[:2] / f"{image_k}.lsc"

    def _read(self, path: Path, codec_k: str, image_k: str, qualities: tuple, quiet: bool = False) -> dict:
        """The entry's payloads ({} when absent, unreadable or damaged; never raises).

        ``quiet``: neither count nor report a problem (the re-read before a write; the
        load that preceded it did).
        """
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except OSError as exc:
            if quiet:
                return {}
            self.count("read_errors")
            self._warn_once("read", f"source cache {self.folder}: cannot read {path} ({exc}); "
                                    "its payloads are encoded again")
            return {}
        try:
            return _unpack(data, codec_k, image_k, qualities)
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            if quiet:
                return {}
            self.count("damaged")
            self._warn_once("damaged", f"source cache {self.folder}: ignoring damaged entry {path} ({exc}); "
                                       "its payloads are encoded again (further damaged entries are counted, "
                                       "not reported)")
            return {}

    def load(self, codec, image_k: str) -> dict:
        """The cached ``{quality: payload}`` of one image (``image_k`` from :func:`image_digest`) for ``codec``."""
        ck = codec_key(codec)
        out = self._read(self.entry_path(ck, image_k), ck, image_k, tuple(codec.qualities))
        if out:
            self.count("entries_read")
        return out

    def save(self, codec, image_k: str, payloads: dict) -> bool:
        """Merge ``payloads`` ({quality: bytes}) into the image's entry, atomically; False if not written."""
        if self.read_only or not payloads:
            return False
        ck = codec_key(codec)
        path = self.entry_path(ck, image_k)
        qualities = tuple(codec.qualities)
        merged = self._read(path, ck, image_k, qualities, quiet=True)
        if all(merged.get(q) == bytes(p) for q, p in payloads.items()):
            return False  # another process wrote them already
        merged.update((q, bytes(p)) for q, p in payloads.items())
        order = {q: i for i, q in enumerate(qualities)}
        merged = dict(sorted(merged.items(), key=lambda kv: order[kv[0]]))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            if path.parent not in self._made:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._made.add(path.parent)
            self._describe(codec, ck)
            with open(tmp, "wb") as f:
                f.write(_pack(ck, image_k, merged))
            os.replace(tmp, path)
        except OSError as exc:
            self._made.discard(path.parent)  # deleted meanwhile? made again next time
            self.count("write_errors")
            self._warn_once("write", f"source cache {self.folder} cannot be written ({exc}); payloads are "
                                     f"encoded as usual but not kept (set {ENV_VAR}=off to silence this, or "
                                     "to a folder you can write)")
            with contextlib.suppress(OSError):
                tmp.unlink()
            return False
        self.count("entries_written")
        return True

    def _describe(self, codec, ck: str) -> None:
        """Write ``<codec key>/codec.json`` once (what the folder's entries were encoded with)."""
        if ck in self._described:
            return
        path = self.folder / FORMAT_VERSION / ck / "codec.json"
        if not path.is_file():
            tmp = path.with_name(f".codec.json.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            tmp.write_text(json.dumps(codec_spec(codec), indent=2, sort_keys=True, default=str) + "\n")
            os.replace(tmp, path)
        self._described.add(ck)


# --------------------------------------------------------------------------- the active cache

_ACTIVE: list = []          # stack of caches set by activated()
_FROM_ENV: dict = {}        # {env value: SourceCache} used outside activated()
_ENV_LOCK = threading.Lock()


def _env_setting():
    """(True, folder) for a folder in ``$LINKSIM_SOURCE_CACHE``, (False, None) for ``off``, (None, None) unset."""
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return None, None
    if value.lower() in _OFF:
        return False, None
    return True, value


def active():
    """The cache rate control uses now, or None.

    The innermost :func:`activated` cache (None inside ``activated(None)``); outside any,
    a cache in ``$LINKSIM_SOURCE_CACHE`` when that names a folder (so worker processes
    that inherit the variable share it), else None.  ``$LINKSIM_SOURCE_CACHE=off``
    disables caching everywhere, :func:`activated` included.
    """
    on, folder = _env_setting()
    if on is False:
        return None
    if _ACTIVE:
        return _ACTIVE[-1]
    if on:
        with _ENV_LOCK:
            if folder not in _FROM_ENV:
                _FROM_ENV[folder] = SourceCache(folder)
            return _FROM_ENV[folder]
    return None


@contextlib.contextmanager
def activated(folder, export: bool = False):
    """Within the block, rate control reads and writes the cache in ``folder`` (None: no disk cache).

    The setting is process-wide (every thread), not inherited by new processes:
    ``export=True`` also sets ``$LINKSIM_SOURCE_CACHE`` to the folder (``off`` for
    None) within the block, so worker processes started in it use the same folder.

    Input
    -----
    folder : path, :class:`SourceCache` or None
    export : bool

    Output
    ------
    the :class:`SourceCache` in use (None when ``folder`` is None or ``$LINKSIM_SOURCE_CACHE=off``);
    its :meth:`SourceCache.stats` gives the hits and misses of the block (this process's).
    """
    cache = folder if isinstance(folder, SourceCache) or folder is None else SourceCache(folder)
    saved = os.environ.get(ENV_VAR)
    if export and (saved or "").strip().lower() not in _OFF:
        os.environ[ENV_VAR] = "off" if cache is None else str(cache.folder)
    _ACTIVE.append(cache)
    try:
        yield active()
    finally:
        _ACTIVE.pop()
        if export:
            if saved is None:
                os.environ.pop(ENV_VAR, None)
            else:
                os.environ[ENV_VAR] = saved


def stats() -> dict | None:
    """:meth:`SourceCache.stats` of the active cache, or None when none is active."""
    cache = active()
    return None if cache is None else cache.stats()


def cache_dir_for_run(store=None, run_dir=None) -> Path | None:
    """The source-cache folder of a run (None: no disk cache).

    1. ``$LINKSIM_SOURCE_CACHE``: ``off`` (or ``0``, ``false``, ``no``, ``none``) gives
       None; any other value is the folder.
    2. ``<write root>/source_cache`` of ``store`` (a :class:`~linksim.store.ModelStore`,
       default :func:`~linksim.store.default_store`) when the write root is an existing
       folder this process can write and not the shipped weights: the user's store is in
       use, and the cache is shared by every run that uses it.
    3. ``<run_dir>/.source_cache`` (resumed and repeated runs of that directory reuse
       it), or None without a run directory.

    Creates nothing.
    """
    on, folder = _env_setting()
    if on is False:
        return None
    if on:
        return Path(os.path.expanduser(folder))
    from linksim.store import SHIPPED_DIR, default_store

    store = store if store is not None else default_store()
    root = Path(store.write_root)
    try:
        in_use = root.is_dir() and os.access(root, os.W_OK | os.X_OK) \
            and root.resolve() != SHIPPED_DIR.resolve() and SHIPPED_DIR.resolve() not in root.resolve().parents
    except OSError:
        in_use = False
    if in_use:
        return root / SOURCE_CACHE_DIR_NAME
    return None if run_dir is None else Path(run_dir) / RUN_CACHE_DIR_NAME
