"""Interactive widgets for notebooks: slice viewer, box picker, mask painter, training monitor,
precision–recall explorer and embedding explorer.

Each widget is a toolkit-free *state* class (``SliceState``, ``BoxPickerState``, ...: values,
rules, saving, change callbacks) plus an ipywidgets/ipympl *view* (``SliceViewer``,
``BoxPicker``, ...) that renders the state and forwards user events to it. Use
``%matplotlib widget`` (or :func:`setup_notebook`) in JupyterLab for live figures.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
