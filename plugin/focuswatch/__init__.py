"""focuswatch — keeps astrophotographers in focus all night.

One subpackage per concern (the map, with what each may import: ``docs/architecture.md``).
A frame travels io → stars → diagnose → policy; :mod:`focuswatch.pipeline` runs those steps
for every command:

* pure computation, no files, no clock: ``model/`` (frame data classes, the record schema),
  :mod:`~focuswatch.optics`, ``stars/``, ``diagnose/``, ``policy/`` (refocus rules),
  :mod:`~focuswatch.grade`, :mod:`~focuswatch.autofocus`, :mod:`~focuswatch.bahtinov`,
  ``sim/`` (simulated frames with a known truth; its only I/O is ``sim/write.py``);
* I/O at the edges: ``io/`` (frames read-only, a frame file through the pipeline, journal, state
  file, NINA reports),
  ``watch/`` (the watcher loop, readiness, NINA events, remote mode), ``triggers/`` (one
  module per trigger and the runner), ``siril/``;
* many frames and output: ``scale/`` (worker pools, batch jobs, archive), ``render/`` (text,
  JSON, the night report, charts), ``cli/`` (``main`` and one module per command group).

Every exception is in :mod:`focuswatch.errors`.
"""

__version__ = "0.1.0"
