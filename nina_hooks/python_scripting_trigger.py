"""focuswatch state reader for N.I.N.A.'s Python Scripting plugin (standard library only).

Use it as the script of a "Python Trigger" with **Script source = File** (this file), timing
"Before next item", and nest "Run Autofocus" (On error: *Skip current instruction set*)
followed by an External Script running ``autofocus-done.bat`` in the trigger's "Triggered
Instructions". Needs NINA 3.3.0.1037 or later and a 64-bit CPython (the plugin runs the script
in-process through pythonnet; see nina_hooks/README.md).

How the plugin runs it (NINA.Plugin.Python, PythonScriptingTrigger.cs): before (and/or after)
each sequence item it executes the whole file in a fresh scope with ``phase`` ("before" or
"after"), ``previousItem``, ``nextItem``, ``parent``, ``trigger``, ``state`` (a dict kept
between runs) and ``__file__`` set, then *requires* a module-level variable ``result``:
without it the trigger fails with "Python trigger script must assign a result value.". A
truthy ``result`` runs the triggered instructions.

So this file assigns ``result`` at module level, always: True only when the focuswatch watcher
wrote a fresh state saying a refocus is due and no autofocus has been reported since. Any
problem (no state yet, stale state, unreadable file, a bug here) gives ``result = False``, so a
broken watcher can not make NINA autofocus in a loop, and nothing is ever raised into NINA.
The same rules as ``focuswatch check``.

Run directly it behaves like ``focuswatch check`` without focuswatch installed::

    python python_scripting_trigger.py      # exit 0 fine, 1 refocus due, 2 error
"""
from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

# ---- settings --------------------------------------------------------------------------------
#: The watcher's state folder; None = the same default focuswatch uses
#: (%FOCUSWATCH_STATE_DIR%, else %LOCALAPPDATA%\focuswatch on Windows).
STATE_DIR: str | None = None
#: A state older than this many minutes is ignored (watcher stopped); 0 = never stale.
MAX_AGE_MIN = 60.0
#: Record the autofocus in the event log as soon as the trigger fires (no autofocus-done needed).
CLEAR_ON_TRIGGER = False
# ----------------------------------------------------------------------------------------------


def state_dir() -> Path:
    """The folder holding state.json and autofocus-events.jsonl (focuswatch's default rules)."""
    if STATE_DIR:
        return Path(STATE_DIR).expanduser()
    if os.environ.get("FOCUSWATCH_STATE_DIR"):
        return Path(os.environ["FOCUSWATCH_STATE_DIR"]).expanduser()
    home = Path.home()
    if sys.platform.startswith("win"):
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else home / "AppData" / "Local") / "focuswatch"
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "focuswatch"
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "focuswatch"
    return home / ".local" / "state" / "focuswatch"


def _time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    t = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _newest_autofocus(folder: Path) -> datetime | None:
    try:
        lines = (folder / "autofocus-events.jsonl").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    newest = None
    for line in lines:
        try:
            t = _time(json.loads(line).get("time"))
        except (ValueError, AttributeError):
            continue
        if t is not None and (newest is None or t > newest):
            newest = t
    return newest


def check(folder: Path | None = None, max_age_min: float = MAX_AGE_MIN) -> tuple[int, str]:
    """(exit code, message) with ``focuswatch check``'s meaning: 0 fine, 1 refocus due, 2 error."""
    folder = folder or state_dir()
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return 0, "no watcher state yet"
    except (OSError, ValueError) as exc:
        return 2, f"cannot read {folder / 'state.json'}: {exc}"
    if not isinstance(state, dict):
        return 2, f"{folder / 'state.json'} is not a focuswatch state"
    updated = _time(state.get("updated"))
    now = datetime.now(timezone.utc)
    if max_age_min and (updated is None or (now - updated).total_seconds() > 60.0 * max_age_min):
        return 0, "watcher state is stale"
    if not state.get("refocus_due"):
        return 0, "in focus"
    since, af = _time(state.get("since")), _newest_autofocus(folder)
    if af is not None and (since is None or af >= since):
        return 0, "an autofocus ran after the request"
    return 1, f"refocus due: {state.get('reason') or 'no reason given'}"


def _record_autofocus(folder: Path) -> None:
    line = json.dumps({"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                       "source": "python-scripting", "note": ""})
    with open(folder / "autofocus-events.jsonl", "a", encoding="utf-8", newline="\n") as fh:
        fh.write(line + "\n")


def refocus_due() -> bool:
    """The trigger predicate: True when focuswatch asks for a refocus (never raises)."""
    try:
        code, _ = check()
        if code == 1 and CLEAR_ON_TRIGGER:
            _record_autofocus(state_dir())
        return code == 1
    except Exception:  # a predicate must never break the sequence
        return False


def _plugin_result() -> bool:
    """The value for the plugin's ``result``: :func:`refocus_due`, and False on anything unexpected."""
    try:
        return bool(refocus_due())
    except BaseException:  # noqa: BLE001 - nothing may escape into NINA's sequencer
        return False


#: What the Python Scripting plugin reads after running this file (it must exist, see the docstring).
result = _plugin_result() if ("phase" in globals() or __name__ != "__main__") else False


if __name__ == "__main__" and "phase" not in globals():  # run from a command prompt, not by the plugin
    code, message = check()
    print(message)
    sys.exit(code)
