"""Asking a capture program for a refocus: NINA's Advanced API, Ekos over D-Bus, or a command.

One module per trigger (:mod:`.nina_api`, :mod:`.ekos`, :mod:`.command`) on a shared
:mod:`.base`; :mod:`.runner` builds them from ``[trigger]`` and retries them. This is I/O at the edge: the policy (:mod:`focuswatch.policy`) decides *that* a refocus is
due; this module only delivers the request and reports what happened. The state file
(:mod:`focuswatch.io.statefile`) is always written by the watcher, whatever the triggers do, so
hooks inside the capture program (``focuswatch check``) see the request even when every
trigger here fails.

==============  ==========================================================================
trigger         what it does
==============  ==========================================================================
``nina-api``    ``GET .../v2/api/equipment/focuser/info`` (not connected: fails, not retried),
                ``.../sequence/state`` (defers while an instruction is RUNNING),
                ``.../equipment/camera/info`` (defers while ``IsExposing``), then
                ``GET .../v2/api/equipment/focuser/auto-focus``; the JSON answer must say
                ``"Success": true`` (a 409 is not retried). Advanced API plugin, default port
                1888. It runs outside the sequencer: prefer in-sequence hooks when you can.
``ekos-dbus``   introspects ``org.kde.kstars`` ``/KStars/Ekos/Focus``, finds the optical
                train over D-Bus (or ``ekos_train``), defers while the focus module is busy,
                calls ``start()`` (KStars 3.6) or ``start(train)`` and succeeds only when
                ``newStatus``/``status`` show the autofocus running.
``command``     runs a program with arguments (never through a shell) with a timeout; exit 0
                is success. ``{reason}``, ``{hfr_px}``, ``{defocus_um}``, ``{defocus_cfz}``,
                ``{filter}``, ``{file}``, ``{time}`` in arguments are replaced; the same
                values are in ``FOCUSWATCH_*`` environment variables.
==============  ==========================================================================

A trigger never raises for a remote failure: :meth:`Trigger.fire` returns a
:class:`TriggerResult` with ``ok = False`` and a message that says what to check.
:class:`TriggerRunner` retries failed triggers with exponential back-off (``retry_initial_s``
doubling up to ``retry_max_s``, at most ``max_attempts``), driven by an explicit ``now`` so
the watcher's loop — and the tests — decide when time passes.

Configuration (``[trigger]`` in the TOML file, see :class:`TriggerConfig`)::

    [trigger]
    nina_api = true
    nina_host = "127.0.0.1"
    nina_port = 1888
    timeout_s = 5
    ekos_dbus = false
    ekos_train = "Primary"
    command = ["C:/Tools/notify.exe", "--text", "refocus: {reason}"]
    command_timeout_s = 60
    retry_initial_s = 30
    retry_max_s = 600
    max_attempts = 5
"""
from __future__ import annotations

from focuswatch.triggers.base import (  # noqa: F401 - the package's face
    TriggerConfig,
    TriggerRequest,
    TriggerResult,
    Trigger,
)
from focuswatch.triggers.nina_api import (  # noqa: F401 - the package's face
    NINA_AF_PATH,
    NINA_CAMERA_PATH,
    NINA_FOCUSER_PATH,
    NINA_SEQUENCE_STATE_PATH,
    NINA_LAST_AF_PATH,
    read_before,
    NinaApiTrigger,
    running_sequence_items,
)
from focuswatch.triggers.ekos import (  # noqa: F401 - the package's face
    EKOS_FOCUS_COMPLETE,
    EKOS_FOCUS_FAILED,
    EKOS_FOCUS_ABORTED,
    EKOS_FOCUS_WAITING,
    EKOS_BUS_NAME,
    EKOS_FOCUS_PATH,
    EKOS_FOCUS_INTERFACE,
    EKOS_FOCUS_STATES,
    EKOS_IDLE_STATES,
    EKOS_RUNNING_STATES,
    EKOS_CAPTURE_PATH,
    EKOS_CAPTURE_INTERFACE,
    ekos_state_name,
    _ekos_state,
    EkosFocusApi,
    EkosDbusTrigger,
    ekos_wait_result,
)
from focuswatch.triggers.command import (  # noqa: F401 - the package's face
    STDERR_TAIL_CHARS,
    CommandTrigger,
)
from focuswatch.triggers.runner import (  # noqa: F401 - the package's face
    DEADLINE_MARGIN_S,
    REQUESTS_PER_ATTEMPT,
    GRACE_S,
    attempt_deadline_s,
    DeadlineTrigger,
    BackgroundTriggers,
    build_triggers,
    PendingTrigger,
    backoff_s,
    TriggerRunner,
)

__all__ = [
    "EKOS_FOCUS_COMPLETE",
    "EKOS_FOCUS_FAILED",
    "EKOS_FOCUS_ABORTED",
    "EKOS_FOCUS_WAITING",
    "TriggerConfig",
    "TriggerRequest",
    "TriggerResult",
    "Trigger",
    "NINA_AF_PATH",
    "NINA_CAMERA_PATH",
    "NINA_FOCUSER_PATH",
    "NINA_SEQUENCE_STATE_PATH",
    "NINA_LAST_AF_PATH",
    "read_before",
    "NinaApiTrigger",
    "running_sequence_items",
    "EKOS_BUS_NAME",
    "EKOS_FOCUS_PATH",
    "EKOS_FOCUS_INTERFACE",
    "EKOS_FOCUS_STATES",
    "EKOS_IDLE_STATES",
    "EKOS_RUNNING_STATES",
    "EKOS_CAPTURE_PATH",
    "EKOS_CAPTURE_INTERFACE",
    "ekos_state_name",
    "EkosFocusApi",
    "EkosDbusTrigger",
    "ekos_wait_result",
    "STDERR_TAIL_CHARS",
    "CommandTrigger",
    "DEADLINE_MARGIN_S",
    "REQUESTS_PER_ATTEMPT",
    "GRACE_S",
    "attempt_deadline_s",
    "DeadlineTrigger",
    "BackgroundTriggers",
    "build_triggers",
    "PendingTrigger",
    "backoff_s",
    "TriggerRunner",
]
