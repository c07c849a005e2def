"""finsent: financial-news sentiment models from raw text to an explained prediction.

Importing the package stays cheap (no torch, no transformers: ``finsent --help`` starts fast), yet it makes
finsent's model folders load in the Hugging Face ecosystem in one line: finsent's classifier (model type
``finsent_classifier``) is registered with ``AutoConfig`` and ``AutoModelForSequenceClassification``, and so
with ``transformers.pipeline``, as soon as the program imports transformers' Auto classes (at once if it
already has). Until then a small ``sys.meta_path`` hook only watches imports; it removes itself when done.
"""

from __future__ import annotations

import importlib
import sys
import threading
import warnings
from typing import Any

__version__ = "0.1.0"

_AUTO_MODULE = "transformers.models.auto.configuration_auto"
"""Imported by every Auto class (and ``pipeline``): registering once it exists is registering in time."""
_MODELING = "finsent_cli.core.models.hf_encoder.modeling_finsent"


class _RegisterWithAutoClasses:
    """A ``sys.meta_path`` finder that finds nothing itself. It wraps the loader of each thread's outermost
    import of a transformers module; when one ends with :data:`_AUTO_MODULE` imported, it removes itself and
    registers finsent's classes. Waiting for the outermost import to end matters: transformers imports its
    Auto configs halfway through importing ``modeling_utils``, the module finsent's model class subclasses.
    Registering never breaks the user's import: a failure becomes a warning."""

    def __init__(self) -> None:
        self._inside = threading.local()  # an outermost transformers import is running in this thread

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if getattr(self._inside, "on", False) or not (name == "transformers" or name.startswith("transformers.")):
            return None
        try:
            later = sys.meta_path[sys.meta_path.index(self) + 1 :]
        except ValueError:  # removed meanwhile (another thread registered)
            return None
        spec = None
        for finder in later:  # what the import system would do without this finder
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        loader = getattr(spec, "loader", None)
        original = getattr(loader, "exec_module", None)
        if original is None:
            return spec

        def exec_module(module: Any) -> None:
            self._inside.on = True
            try:
                original(module)
            finally:
                self._inside.on = False
                if getattr(loader, "__dict__", {}).get("exec_module") is exec_module:
                    del loader.exec_module  # the loader is as it was
            if _AUTO_MODULE in sys.modules:
                self.register()

        try:
            loader.exec_module = exec_module
        except (AttributeError, TypeError):  # a loader that takes no attributes: watch the next import instead
            pass
        return spec

    def register(self) -> None:
        """Remove the hook and register finsent's classes (a warning if that fails)."""
        try:
            sys.meta_path.remove(self)
        except ValueError:  # another thread got here first
            return
        _register()


def _register() -> None:
    try:
        importlib.import_module(_MODELING).register_auto_classes()
    except Exception as exc:  # noqa: BLE001 - the user's transformers import must go on whatever happens here
        warnings.warn(
            f"finsent could not register its models with transformers' Auto classes ({type(exc).__name__}: {exc}); "
            "load finsent folders with trust_remote_code=True, or import finsent_cli.core.models.hf_encoder.model first",
            RuntimeWarning,
            stacklevel=2,
        )


def stop_watching_imports() -> None:
    """Remove the import hook without registering: the ``finsent`` command does (its model kinds register
    finsent's classes when they load a model), so a command that loads only a tokenizer does not pay for
    importing transformers' modeling code."""
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != _RegisterWithAutoClasses.__name__]


if _AUTO_MODULE in sys.modules:
    _register()
elif not any(type(finder).__name__ == _RegisterWithAutoClasses.__name__ for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWithAutoClasses())
