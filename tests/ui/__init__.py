"""Tests of the Gradio web app (``ui/``).

pytest imports this folder as the top-level package ``ui`` (``tests/`` has no
``__init__.py``, so with the default "prepend" import mode the package name is the folder
name), which shadows the app's own ``ui`` package. Putting the app's folder on this
package's search path keeps ``import ui.render`` / ``ui.app`` / ... resolving to the app,
whether or not the project is installed in editable mode. (The test modules' names,
``conftest`` and ``test_*``, do not clash with the app's modules.)
"""

from pathlib import Path as _Path

_APP_UI = _Path(__file__).resolve().parents[2] / "ui"
if _APP_UI.is_dir() and str(_APP_UI) not in __path__:
    __path__.insert(0, str(_APP_UI))
