"""User errors and the exit codes of the ``linksim`` command (``docs/errors.md``).

A *user error* is bad input: a scenario file, a data set, a model store, an output
folder, a command line.  The command prints it as one paragraph, ``error: FILE:LINE:
field 'F': what is wrong (allowed: ...)``, without a traceback, and exits with
:data:`EXIT_USER_ERROR`.  Anything else is a bug or a failure of the machine: one
line naming the exception and ``--debug`` (which prints the traceback), exit
:data:`EXIT_FAILURE`.

How an exception becomes a user error: it derives from :class:`UserError`, or its
class sets ``user_error = True``, or it is one of the exceptions listed in
:data:`USER_ERROR_NAMES` (errors of modules this one must not import, e.g. the run
directory's ``RunError``, which import pandas or TensorFlow), or an ``OSError`` about
a path the user gave (file not found, permission denied, is a folder).

This module imports nothing but the standard library.
"""

from __future__ import annotations

__all__ = ["UserError", "EXIT_OK", "EXIT_FAILURE", "EXIT_USER_ERROR", "EXIT_INTERRUPTED", "USER_ERROR_NAMES",
           "is_user_error"]

EXIT_OK = 0
#: An unexpected failure (a bug, the machine): a one-line message; the traceback with --debug.
EXIT_FAILURE = 1
#: Bad input: a scenario, data set, model store, output folder or command line.
EXIT_USER_ERROR = 2
#: Interrupted (Ctrl-C); finished points are kept.
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """Base of the exceptions that report bad input (exit status 2, no traceback)."""

    user_error = True


#: Exception class names (with their module) that are user errors, for classes that do
#: not derive from :class:`UserError`.
USER_ERROR_NAMES = {
    "linksim.scenario.ScenarioError", "linksim.registry.UnknownNameError", "linksim.registry.PluginError",
    "linksim.run.directory.RunError", "linksim.data.base.DatasetError",
}


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` reports bad input (exit 2, no traceback) rather than a failure."""
    if isinstance(exc, UserError) or getattr(type(exc), "user_error", False):
        return True
    for cls in type(exc).__mro__:
        if f"{cls.__module__}.{cls.__qualname__}" in USER_ERROR_NAMES:
            return True
    return isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
                            FileExistsError))
