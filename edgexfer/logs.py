"""Quiet by default: what TensorFlow, absl and the other dependencies print, and what we let through.

A TensorFlow command used to open with 7–15 lines of C++ notices, twice (the two shared libraries
TensorFlow loads each carry their own copy of absl logging), two of them tagged ``E0000`` although
nothing was wrong. Where they come from, as seen with TensorFlow 2.21:

- ``I0000 … port.cc] oneDNN custom operations are on …``, ``I0000 … cudart_stub.cc] Could not find cuda
  drivers …`` and the ``WARNING: All log messages before absl::InitializeLog() is called …`` banner are
  written by static initializers while ``import tensorflow`` loads its shared libraries, *before* absl
  logging is initialized. absl ignores every threshold at that point (``TF_CPP_MIN_LOG_LEVEL`` does
  not remove them), so the only way to keep them off the console is to route file descriptor 2 through a
  filter while TensorFlow is imported, passing on only the lines that are not absl notices (a crash's
  output included: see ``held_stderr``).
- ``E0000 … cuda_platform.cc] failed call to cuInit: … UNKNOWN ERROR (303)`` (the first op, on a machine
  without a GPU), ``E0000 … node_def_util.cc] NodeDef mentions attribute use_unbounded_threadpool …``
  (tf.data, a known harmless mismatch between the Python and C++ op definitions), the
  ``cpu_feature_guard`` notice and grappler's ``devices.cc``/``single_machine.cc`` lines (ONNX export) are
  written after initialization and obey ``TF_CPP_MIN_LOG_LEVEL``: level 3 removes them all.

:func:`configure` is called by the ``edgexfer`` command group before any command runs, and by
:func:`edgexfer._lazy.require` for library users; ``edgexfer --verbose`` (or ``EDGEXFER_VERBOSE=1``)
turns all of it off and shows everything. Variables the user set are never overridden.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import json
import logging
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator

VERBOSE_ENV = "EDGEXFER_VERBOSE"

# set with os.environ.setdefault before TensorFlow (or grpc, used by Ray) is imported
QUIET_ENV: dict[str, str] = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # C++ INFO/WARNING/ERROR after absl is initialized (cuInit, NodeDef, grappler)
    "GRPC_VERBOSITY": "ERROR",  # grpc's own absl notices (Ray, TensorBoard)
    "GLOG_minloglevel": "2",  # libraries that still use glog
}

# modules whose FutureWarning/DeprecationWarning speak to their own developers, not to our users
NOISY_MODULES = ("tensorflow", "keras", "tf2onnx", "onnxconverter_common", "onnxruntime", "onnx", "keras_tuner",
                 "absl", "google", "tensorboard", "ray", "h5py", "optree", "flatbuffers", "numpy")

# one line of absl/glog output: severity letter, MMDD, time, thread id, file:line]
_ABSL_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\s\]]+:\d+\] ")
_ABSL_NOTICES = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "To enable the following instructions:",  # second line of the cpu_feature_guard notice
)

_state = {"configured": False, "verbose": False}
_set_here: set[str] = set()  # variables of QUIET_ENV this process set (not the user)


def set_by_edgexfer(name: str) -> bool:
    """True when ``name`` was set by :func:`configure`, not by the user (doctor reports only the user's)."""
    return name in _set_here


def is_verbose() -> bool:
    """True when the user asked to see everything (``--verbose`` or ``EDGEXFER_VERBOSE=1``)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def configure(verbose: bool | None = None) -> None:
    """Quiet TensorFlow, absl, grpc and dependency warnings for this process and its children.

    ``verbose`` True shows everything (and is passed on to subprocesses through ``EDGEXFER_VERBOSE``);
    None keeps what the environment says. Safe to call more than once; call it before TensorFlow is
    imported (later calls still filter warnings and Python loggers, not the C++ lines already shown).
    """
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    if is_verbose():
        _state.update(configured=True, verbose=True)
        return
    if _state["configured"] and not _state["verbose"]:
        return
    for name, value in QUIET_ENV.items():
        if name not in os.environ:
            os.environ[name] = value
            _set_here.add(name)
    _filter_warnings()
    for name in ("tensorflow", "absl", "tf2onnx", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "tensorflow" not in sys.modules and not any(isinstance(f, QuietImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, QuietImportFinder())
    _state.update(configured=True, verbose=False)


def _filter_warnings() -> None:
    pattern = r"(" + "|".join(re.escape(m) for m in NOISY_MODULES) + r")(\..*)?$"
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=pattern)
    # Keras: "Do not pass an input_shape/input_dim argument to a layer" and friends are about Keras' own API
    warnings.filterwarnings("ignore", category=UserWarning, module=r"keras(\..*)?$",
                            message=r".*(input_shape|input_dim|PyDataset|build\(\)|`build\(\)`).*")


def is_absl_notice(line: str) -> bool:
    """True for a line TensorFlow's C++ logging (absl/glog) wrote, or absl's pre-initialization banner."""
    return bool(_ABSL_LINE.match(line)) or line.startswith(_ABSL_NOTICES)


# the filter that holds descriptor 2 while TensorFlow is imported: a small child process, so that what a
# native crash of the import writes (and everything before it) still reaches the user: the child reads
# until the pipe closes, which happens when this process ends, however it ends
_FILTER = """
import json, re, sys
pattern, notices = json.loads(sys.argv[1])
line_re, notices, out = re.compile(pattern), tuple(notices), sys.stdout.buffer
for raw in sys.stdin.buffer:
    text = raw.decode("utf-8", "replace")
    if not (line_re.match(text) or text.startswith(notices)):
        out.write(raw)
        out.flush()
"""


@contextlib.contextmanager
def held_stderr() -> Iterator[None]:
    """Route file descriptor 2 through a filter while the block runs: every line but absl's notices is
    passed on, in order, to the real stderr.

    The filter is a child process reading a pipe (``python -S``: no site, no edgexfer import, a few tens of
    milliseconds beside TensorFlow's seconds): if the block crashes natively (SIGSEGV, SIGABRT from a C++
    CHECK), the pipe closes with the process and the child still writes out everything it was given,
    the crash's own message included. Without a usable interpreter or descriptor 2, nothing is held.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real descriptor 2 (embedded interpreters)
        yield
        return
    try:
        child = subprocess.Popen([sys.executable, "-S", "-c", _FILTER, json.dumps([_ABSL_LINE.pattern,
                                                                                   list(_ABSL_NOTICES)])],
                                 stdin=subprocess.PIPE, stdout=saved, stderr=saved, close_fds=True)
    except (OSError, ValueError):  # no interpreter to run the filter: show everything rather than risk losing it
        os.close(saved)
        yield
        return
    assert child.stdin is not None
    os.dup2(child.stdin.fileno(), 2)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        child.stdin.close()  # the filter sees the end of its input, writes what is left and exits
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()


class _QuietLoader(importlib.abc.Loader):
    """Wraps TensorFlow's own loader: its module code runs with descriptor 2 held (see ``held_stderr``)."""

    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):  # noqa: D102
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:  # noqa: D102
        with held_stderr():
            self._loader.exec_module(module)
        for name in ("tensorflow", "absl"):
            logging.getLogger(name).setLevel(logging.ERROR)

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class QuietImportFinder(importlib.abc.MetaPathFinder):
    """A meta-path finder for the first ``import tensorflow`` only: whoever imports it (keras, tf2onnx,
    our trainer), the libraries' load-time notices are held back. It finds nothing itself."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102
        if fullname != "tensorflow":
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, QuietImportFinder) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


def progress_disabled(requested: bool = True) -> bool | None:
    """tqdm's ``disable`` for a bar the caller wants (``requested``): None lets tqdm hide it when its
    output is not a terminal (a log file, a pipe, CI), True hides it always."""
    return None if requested else True
