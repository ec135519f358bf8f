"""No pickle of unknown origin: the pickles among a model's files are checked against an
allowlist before anything else reads them (``adopt``, ``import``, ``register DIR``).

Blocklist scanners (picklescan, modelscan) are bypassed regularly; an allowlist holds. Each
pickle is read by fickling's allowlist unpickler (``FicklingMLUnpickler``): every global the
pickle names is looked up in the allowlist first, and a name outside it stops the read before
it is called, so a malicious pickle never runs. The allowlist is fickling's ML list, skops'
trusted types (scikit-learn's estimators and internals, numpy and scipy types), the few
numpy and scikit-learn internals a fitted scikit-learn model pickles, and the user's own
``trusted_pickle_types``. modelyard's own scikit-learn saves are skops files, not pickles.

A file is a pickle by its name (``.pkl``, ``.pickle``, ``.joblib``, ...) or by its first bytes
(protocol 2 and later start with ``0x80`` and the protocol number). A pickle that cannot be
read this way (joblib's inline arrays, a damaged file) is refused too: unknown is not safe.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterable
from pathlib import Path

from modelyard.errors import InvalidInput

PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".pck", ".joblib", ".dill", ".cloudpickle"})
MAX_CHECKED_BYTES = 4 * 1024 * 1024 * 1024  # beyond this, a pickle is refused unread

# What scikit-learn models pickle beyond skops' trusted types: the tree structure skops asks
# to trust by name, and numpy's array and scalar reconstructors under their 1.x and 2.x names.
_SKLEARN_AND_NUMPY = (
    "sklearn.tree._tree.Tree",
    "numpy.dtype", "numpy.ndarray",
    "numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar",
    "numpy._core.numeric._frombuffer", "numpy.core.numeric._frombuffer",
    "numpy.random._pickle.__randomstate_ctor", "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random._pickle.__generator_ctor",
    "collections.OrderedDict", "builtins.slice", "builtins.complex", "builtins.frozenset",
    "builtins.bytearray",
)


@functools.cache
def _allowlist(extra: tuple[str, ...]) -> tuple[str, ...]:
    names: set[str] = set(_SKLEARN_AND_NUMPY) | set(extra)
    try:
        from skops.io import _trusted_types as skops_types
    except ImportError:  # skops (and so scikit-learn) absent: fickling's list and ours
        return tuple(sorted(names))
    for group in ("PRIMITIVE_TYPE_NAMES", "CONTAINER_TYPE_NAMES", "SKLEARN_ESTIMATOR_TYPE_NAMES",
                  "SKLEARN_INTERNAL_TYPE_NAMES", "NUMPY_DTYPE_TYPE_NAMES",
                  "NUMPY_UFUNC_TYPE_NAMES", "NUMPY_RANDOM_BIT_GENERATOR_TYPE_NAMES",
                  "SCIPY_UFUNC_TYPE_NAMES"):
        names.update(str(n) for n in getattr(skops_types, group, ()))
    return tuple(sorted(n for n in names if "." in n))


def is_pickle(path: Path) -> bool:
    """A pickle by name, or by the header of protocols 2 to 5."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    try:
        with path.open("rb") as file:
            head = file.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def refusal(path: Path, allowed: tuple[str, ...]) -> str | None:
    """Why the pickle at ``path`` is refused (None: everything it names is allowed)."""
    import importlib.util
    import pickle

    if importlib.util.find_spec("fickling") is None:
        raise InvalidInput("checking pickles of unknown origin needs fickling: pip install "
                           "'modelyard[signing]'")

    from fickling.exception import UnsafeFileError
    from fickling.ml import FicklingMLUnpickler

    try:
        if path.stat().st_size > MAX_CHECKED_BYTES:
            return "too large to check"
        data = path.read_bytes()
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    unpickler = FicklingMLUnpickler(io.BytesIO(data), also_allow=list(allowed))
    try:
        unpickler.load()
    except UnsafeFileError as exc:
        reason = str(getattr(exc, "info", "") or exc)
        named = reason.split("`")[1] if reason.count("`") >= 2 else "a global"
        return f"imports {named}, which is not on the allowlist"
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError, MemoryError, RecursionError):
        return "not a pickle the allowlist check can read"
    return None


def check_pickles(root: Path, what: str, *, extra: Iterable[str] = ()) -> None:
    """Refuse, naming every refused file, a model folder holding a pickle that imports
    anything outside the allowlist; nothing of a refused folder is registered."""
    refused: list[str] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or not is_pickle(path):
            continue
        allowed = _allowlist(tuple(sorted(extra)))
        why = refusal(path, allowed)
        if why is not None:
            refused.append(f"{path.relative_to(root).as_posix()} ({why})")
    if refused:
        raise InvalidInput(f"refusing {what}: pickle of unknown origin: {'; '.join(refused)} "
                           "(add a trusted type to trusted_pickle_types only if you know it "
                           "is safe)")
