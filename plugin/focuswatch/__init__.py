"""focuswatch — keeps astrophotographers in focus all night.

The package is split by concern (see ``../shared/design.md``): pure computation in
:mod:`optics`, :mod:`stars`, :mod:`diagnose`, :mod:`monitor`, :mod:`grade`, :mod:`autofocus`,
:mod:`bahtinov` and :mod:`sim`; I/O at the edges in :mod:`frames`, :mod:`watcher`,
:mod:`journal`, :mod:`triggers`, :mod:`siril`, :mod:`report` and :mod:`cli`.
"""

__version__ = "0.1.0"
