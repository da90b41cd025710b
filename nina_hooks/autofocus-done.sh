#!/usr/bin/env bash
# autofocus-done.sh — tell the focuswatch watcher that an autofocus has just finished.
# It clears the refocus request and the watcher takes its HFR baseline again from the frames after it.
# Extra arguments go to `focuswatch autofocus-done` (e.g. --filter Ha --position 15120 --temp-c 3.5).
#
# Exit status: 0 recorded, 1 could not write the state folder, 2 bad arguments / focuswatch not found.
# Settings: FOCUSWATCH, FOCUSWATCH_PYTHON, FOCUSWATCH_STATE_DIR as in focuswatch-check.sh;
#           FOCUSWATCH_SOURCE names who ran the autofocus (default nina-hook).
FOCUSWATCH="${FOCUSWATCH:-focuswatch}"
FOCUSWATCH_PYTHON="${FOCUSWATCH_PYTHON:-}"
FOCUSWATCH_SOURCE="${FOCUSWATCH_SOURCE:-nina-hook}"

if [ -n "$FOCUSWATCH_PYTHON" ]; then
    cmd=("$FOCUSWATCH_PYTHON" -m focuswatch)
elif command -v "$FOCUSWATCH" >/dev/null 2>&1; then
    cmd=("$FOCUSWATCH")
else
    echo "autofocus-done.sh: cannot find '$FOCUSWATCH'; set FOCUSWATCH to its full path" >&2
    exit 2
fi

exec "${cmd[@]}" autofocus-done --source "$FOCUSWATCH_SOURCE" "$@"
