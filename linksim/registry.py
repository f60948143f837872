"""Name -> class registries for everything a scenario file can name.

A scenario says ``type: jpeg`` or ``code: ldpc_80211n``; the registry of that kind
turns the name into a class.  An unknown name raises :class:`UnknownNameError`,
whose message lists the registered names, so a typo in a scenario file is
explained rather than traced back.

Example
-------
>>> from linksim.registry import CODECS
>>> @CODECS.register("mycodec")
... class MyCodec: ...
>>> CODECS.get("mycodec") is MyCodec
True
"""

from __future__ import annotations

import difflib
import inspect
from typing import Callable, Dict, Iterator, TypeVar

T = TypeVar("T")


def _plural(kind: str) -> str:
    return kind + ("es" if kind.endswith("s") else "s")


class UnknownNameError(KeyError):
    """A name that no class is registered under; the message lists the valid names."""

    user_error = True   # exit status 2 (linksim.errors)

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        close = difflib.get_close_matches(str(name), valid, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        super().__init__(
            f"unknown {kind} '{name}'; registered {_plural(kind)}: {', '.join(valid) or '(none)'}.{hint}"
        )

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


class Registry:
    """A mapping from scenario names to classes (or factories) of one kind.

    Parameters
    ----------
    kind : str
        What is registered, in words ("scheme", "codec", "channel code", ...);
        used in error messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Callable] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator registering ``cls`` under ``name``.

        Raises
        ------
        ValueError
            If ``name`` is already registered to a different object.
        """

        def deco(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            return obj

        return deco

    def get(self, name: str) -> Callable:
        """The class registered under ``name``.

        Raises
        ------
        UnknownNameError
            If nothing is registered under ``name``; lists the valid names.
        """
        if not (isinstance(name, str) and name in self._entries):
            _load_builtin_components()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.kind, name, self.names()) from None

    def create(self, name: str, **params):
        """Instantiate the class registered under ``name`` with ``params``.

        Raises
        ------
        UnknownNameError
            If nothing is registered under ``name``.
        ValueError
            If ``params`` holds options the class does not take (the message
            lists the options it takes), or an option value is invalid.
        """
        cls = self.get(name)
        self.check_options(name, params)
        return cls(**params)

    def options(self, name: str) -> list[str] | None:
        """The named keyword options the class registered under ``name`` takes.

        ``None`` only for a factory that takes nothing but ``**options`` (it checks
        its own).  A class with named options and ``**kwargs`` (every Keras layer)
        lists its named options: the ``**kwargs`` are Keras' own, not scenario options.
        """
        cls = self.get(name)
        try:
            sig = inspect.signature(cls)
        except (TypeError, ValueError):  # pragma: no cover - builtins without signature
            return None
        named = [n for n, p in sig.parameters.items()
                 if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if not named and any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            return None   # a pure ``**options`` factory checks its own options
        # a Keras layer's ``**kwargs`` (name, dtype, trainable) are not scenario options
        return named

    def check_options(self, name: str, params, ignore=()) -> None:
        """Raise ValueError when ``params`` holds options ``name`` does not take.

        The one unknown-option check of linksim: the message names the kind, the
        name, the unknown options and the allowed ones.
        """
        allowed = self.options(name)
        if allowed is not None:
            check_known_options(f"{self.kind} '{name}'", params, allowed, ignore)

    def loaded_names(self) -> list[str]:
        """The names registered so far, without importing the built-in components.

        Built-in names appear only once :meth:`names` (or :meth:`get`) has imported the
        component modules; a plug-in's appear as soon as it is imported.  The scenario
        validator uses this with :mod:`linksim.catalog` so that ``linksim validate``
        does not import TensorFlow.
        """
        return sorted(self._entries)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        _load_builtin_components()
        return sorted(self._entries)

    def describe(self) -> dict[str, str]:
        """``{name: first line of the class docstring}`` for ``linksim list``."""
        out = {}
        for n in self.names():
            doc = inspect.getdoc(self._entries[n]) or ""
            out[n] = doc.strip().splitlines()[0] if doc.strip() else ""
        return out

    def __contains__(self, name: object) -> bool:
        _load_builtin_components()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def check_known_options(what: str, params, allowed, ignore=()) -> None:
    """Raise ValueError naming ``what``, the options of ``params`` not in ``allowed`` and the allowed ones.

    The one unknown-option check of linksim (:meth:`Registry.check_options`, a JSCC
    stage's options, a preset's flat options).
    """
    unknown = sorted(set(params) - set(allowed) - set(ignore), key=str)
    if unknown:
        raise ValueError(f"{what} has no option(s) {', '.join(map(str, unknown))} "
                         f"(allowed: {', '.join(a for a in allowed if a not in ignore) or 'none'})")


SCHEMES = Registry("scheme")
ARCHITECTURES = Registry("architecture")
LOSSES = Registry("loss")
CODECS = Registry("codec")
CHANNEL_CODES = Registry("channel code")
MODULATIONS = Registry("modulation")
CHANNELS = Registry("channel")
RELAYS = Registry("relay")
DATASETS = Registry("dataset")
METRICS = Registry("metric")
TASKS = Registry("task")
PLOTS = Registry("plot")

#: Every registry by the name ``linksim list`` prints it under: the one source of the
#: names a scenario may use (the schema's allowed values come from here too).
ALL = {
    "schemes": SCHEMES,
    "architectures": ARCHITECTURES,
    "losses": LOSSES,
    "codecs": CODECS,
    "channel codes": CHANNEL_CODES,
    "modulations": MODULATIONS,
    "channels": CHANNELS,
    "relays": RELAYS,
    "datasets": DATASETS,
    "metrics": METRICS,
    "tasks": TASKS,
    "plots": PLOTS,
}

_LOADED = False
#: Set by the ``linksim`` command: import TensorFlow without its start-up notices
#: (:func:`linksim.console.import_tensorflow_quietly`) before the built-in components.
QUIET_STARTUP = False


#: Packages every module of which is imported before a registry is read: a new component
#: (a channel, a relay, a loss, an architecture, a scheme, a codec, a task, ...) is one new
#: file in one of them that registers itself, and nothing else changes.
_COMPONENT_PACKAGES = ("linksim.data", "linksim.codecs", "linksim.phy", "linksim.channels", "linksim.schemes",
                       "linksim.tasks")
#: Single modules that register components.
_COMPONENT_MODULES = ("linksim.metrics", "linksim.losses", "linksim.plotting")


def _load_builtin_components() -> None:
    """Import every module of the component packages and the component modules (once)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib
    import pkgutil

    if QUIET_STARTUP:
        from linksim.console import import_tensorflow_quietly

        import_tensorflow_quietly()

    for name in _COMPONENT_PACKAGES:
        package = importlib.import_module(name)
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{name}.{module.name}")
    for name in _COMPONENT_MODULES:
        importlib.import_module(name)


class PluginError(ValueError):
    """A plug-in file that is missing or fails to import; the message names the file."""

    user_error = True   # exit status 2 (linksim.errors)


_PLUGINS: dict = {}


#: Module names of loaded plug-in files start with this.
PLUGIN_MODULE_PREFIX = "linksim_plugin_"


def load_plugin(path, base=None):
    """Import the user module at ``path`` so the components it registers can be named.

    A plug-in is a Python file that registers components with the registries
    (``@SCHEMES.register("mine")``, ``@DATASETS.register(...)``, ``register_metric``,
    ...).  Each file is imported once per process; loading it again returns the
    module already imported.

    Parameters
    ----------
    path : str or path
        The ``.py`` file; a relative path is taken relative to ``base``.
    base : str or path, optional
        The folder relative paths start from (a scenario file's folder; default the
        working directory).

    Output
    ------
    module

    Raises
    ------
    PluginError
        The file does not exist, is not a ``.py`` file, or raises while it is imported
        (the message names the file and the error).
    """
    import importlib.util
    import os
    import sys
    import traceback
    from pathlib import Path

    p = Path(os.path.expanduser(str(path)))
    if not p.is_absolute() and base is not None:
        p = Path(base) / p
    p = p.resolve()
    if str(p) in _PLUGINS:
        return _PLUGINS[str(p)]
    if not p.exists():
        raise PluginError(f"plug-in {path}: file not found ({p})")
    if not p.is_file() or p.suffix != ".py":
        raise PluginError(f"plug-in {path}: not a Python file (a plug-in is a .py file)")
    _load_builtin_components()  # a plug-in may subclass or reuse built-in components
    name = f"{PLUGIN_MODULE_PREFIX}{abs(hash(str(p))):x}_{''.join(c if c.isalnum() else '_' for c in p.stem)}"
    spec = importlib.util.spec_from_file_location(name, p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # a plug-in calling sys.exit() must not end linksim (or pass as exit 0)
        del sys.modules[name]
        where = traceback.extract_tb(exc.__traceback__)[-1]
        line = f", line {where.lineno}" if where.filename == str(p) else ""
        raise PluginError(f"plug-in {p}{line}: import failed: {type(exc).__name__}: {exc}") from exc
    _PLUGINS[str(p)] = module
    return module


def is_plugin_component(cls) -> bool:
    """Whether ``cls`` was defined in a plug-in file (loaded by :func:`load_plugin`)."""
    return str(getattr(cls, "__module__", "")).startswith(PLUGIN_MODULE_PREFIX)


def plugin_failure(cls, what: str, exc: BaseException) -> str:
    """A user-facing message for a plug-in component that raised: its file and line, and the exception."""
    import sys
    import traceback

    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None) or cls.__module__
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
    where = f"{path}, line {frames[-1].lineno}" if frames else path
    return f"{cls.__name__} from plug-in {where}: {what}: {type(exc).__name__}: {exc}"


def load_plugins(paths, base=None) -> list:
    """:func:`load_plugin` for each of ``paths``, in order."""
    return [load_plugin(p, base) for p in paths or ()]
