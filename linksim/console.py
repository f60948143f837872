"""A clean terminal: TensorFlow's and absl's start-up lines do not reach the user.

TensorFlow 2.21 writes its start-up notices from C++ through absl before absl's
logging is initialised, straight to file descriptor 2, whatever
``TF_CPP_MIN_LOG_LEVEL`` says::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... port.cc:153] oneDNN custom operations are on. ...
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    E0000 ... cuda_platform.cc:52] failed call to cuInit: ... (303)

:func:`import_tensorflow_quietly` imports TensorFlow and Sionna and lets TensorFlow
look for GPUs with file descriptor 2 pointed at a temporary file, then writes back
every captured line that is not one of these notices (:data:`NOISE`), so a real
error still shows.  Turning the notices off at their source is not possible: the
oneDNN one goes only with ``TF_ENABLE_ONEDNN_OPTS=0``, which changes the numbers
(the JSCC convolutions), and the others have no switch.  The ``linksim`` command
calls it before anything imports TensorFlow; a library user who wants the same
calls it first.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile

__all__ = ["NOISE", "import_tensorflow_quietly"]

#: Start-up lines dropped: absl's pre-initialisation notice, the oneDNN notice, the
#: CUDA stub and cuInit lines of a machine without GPU, and the CPU-feature notice.
NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|oneDNN custom operations are on"
    r"|cudart_stub\.cc.*Could not find cuda drivers"
    r"|failed call to cuInit"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    r"|TF-TRT Warning: Could not find TensorRT"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    r"|cuda_(executor|diagnostics|dnn|fft|blas|platform)\.cc"
)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and Sionna without their start-up notices on the terminal.

    Sets ``TF_CPP_MIN_LOG_LEVEL=2`` (unless set) and TensorFlow's and absl's Python
    loggers to ERROR.  Lines written during the import that are not start-up notices
    are written back to stderr.  Does nothing when TensorFlow is already imported.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):  # no real fd 2 (e.g. an embedded interpreter)
        _import()
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            _import()
        finally:
            try:
                sys.stderr.flush()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
        tmp.seek(0)
        captured = tmp.read().decode("utf-8", "replace")
    kept = [line for line in captured.splitlines() if line.strip() and not NOISE.search(line)]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")
        sys.stderr.flush()


def _import() -> None:
    import tensorflow as tf

    tf.config.list_physical_devices("GPU")   # CUDA is probed now, inside the quiet window
    try:
        import sionna.phy  # noqa: F401
    except ImportError:  # pragma: no cover - sionna is a dependency
        pass
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover
        pass
