"""Driving Siril: find it, run scripts and the pipe protocol, stack subs, measure a master.

This module is I/O only: it starts ``siril-cli``, writes scripts and links into a work
directory **of ours** (never the user's folder: a user's frames are sacred) and parses
what Siril prints. It makes no decisions; :mod:`focuswatch.grade` does the grading.

One module per job: :mod:`.discover` (find Siril, its version, its settings folder),
:mod:`.run` (scripts), :mod:`.parse` (what Siril prints and writes), :mod:`.pipe` (the pipe
protocol), :mod:`.stack` (stack subs, measure a master, work folders).

Two ways to talk to Siril (facts verified on Debian's Siril 1.0.6, see ``docs/siril.md``):

* **script mode** for batch work: ``siril-cli -d WORKDIR -s /abs/script.ssf``. The exit
  code is 0 on success and 1 on failure, *except* that a failed ``load`` does not fail the
  run, so every call also checks that the expected result lines appeared. Every path we
  put inside a script is relative to WORKDIR: ``-out=`` breaks on paths with spaces.
* **pipe mode** (what pysiril speaks): ``siril-cli -p`` reads commands from a FIFO and
  answers ``log: ...``, ``progress: ...`` and ``status: starting|success|error <command>``
  lines. 1.0.6 uses the fixed FIFOs ``/tmp/siril_command.in``/``.out`` (one instance per
  machine; we hold a lock file while using them) and sends no ``ready``; 1.2+ takes
  custom paths with ``-r``/``-w`` and sends ``ready``. pysiril is used when it is
  importable; otherwise our own :class:`PipeClient`. Pipe mode is POSIX only.

Every call has a timeout and the Siril process is always terminated. Siril missing, too
old, crashing or hanging raises :class:`~focuswatch.errors.SirilError` with the exit code,
the last lines of Siril's log and what to install or fix.

Version differences handled here:

===========================  =====================================  ==============================
what                         1.0.x                                  1.2 and later
===========================  =====================================  ==============================
pipe paths                   fixed ``/tmp/siril_command.in/.out``   ``-r``/``-w`` paths, ``ready``
measuring a master           register a two-image sequence made     ``findstar -out=FILE`` per-star
                             of the master twice (``findstar`` and  table
                             ``psf`` refuse to run from scripts)
``.seq`` ``R`` lines (v3)    ``shiftx shifty fwhm wfwhm round q``   ``fwhm wfwhm round q bg n H..``
===========================  =====================================  ==============================
"""
from __future__ import annotations

from focuswatch.siril.discover import (  # noqa: F401 - the package's face
    MIN_VERSION,
    FINDSTAR_OUT_VERSION,
    ENV_SIRIL,
    INSTALL_HINT,
    SirilInfo,
    parse_version,
    find_siril,
    CONFIG_SUBDIR,
)
from focuswatch.siril.run import (  # noqa: F401 - the package's face
    ScriptResult,
    run_script,
)
from focuswatch.siril.parse import (  # noqa: F401 - the package's face
    ImageStat,
    parse_stat,
    parse_bgnoise,
    SeqImage,
    SeqFile,
    parse_seq,
    parse_findstar_list,
    parse_transforms_by_image,
)
from focuswatch.siril.pipe import (  # noqa: F401 - the package's face
    FIXED_PIPE_IN,
    FIXED_PIPE_OUT,
    PipeReply,
    PipeClient,
    pysiril_available,
    pipe_session,
)
from focuswatch.siril.stack import (  # noqa: F401 - the package's face
    SIRIL_FLOAT_SCALE,
    _stage,
    StackResult,
    stack,
    parse_transforms,
    SirilMeasurement,
    measure,
    workspace,
    load_master_pixels,
)

__all__ = [
    "MIN_VERSION",
    "FINDSTAR_OUT_VERSION",
    "ENV_SIRIL",
    "INSTALL_HINT",
    "SirilInfo",
    "parse_version",
    "find_siril",
    "CONFIG_SUBDIR",
    "ScriptResult",
    "run_script",
    "ImageStat",
    "parse_stat",
    "parse_bgnoise",
    "SeqImage",
    "SeqFile",
    "parse_seq",
    "parse_findstar_list",
    "FIXED_PIPE_IN",
    "FIXED_PIPE_OUT",
    "PipeReply",
    "PipeClient",
    "pysiril_available",
    "pipe_session",
    "SIRIL_FLOAT_SCALE",
    "StackResult",
    "stack",
    "parse_transforms",
    "parse_transforms_by_image",
    "SirilMeasurement",
    "measure",
    "workspace",
    "load_master_pixels",
]
