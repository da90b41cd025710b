#!/usr/bin/env bash
# focuswatch-refocus-gate.sh — the INVERTED check, for programs that treat any non-zero exit as
# "failed" (core N.I.N.A.'s External Script): exit 0 ONLY when a refocus is due, so the
# instruction after it (Run Autofocus) runs; exit 1 when no refocus is due or on any error, so
# the sequencer's error behaviour ("skip current instruction set") skips the autofocus.
#
#   0  refocus due   -> continue to the autofocus
#   1  no refocus (in focus, no state, stale state) or error -> skip
# Settings: as in focuswatch-check.sh (FOCUSWATCH, FOCUSWATCH_PYTHON, FOCUSWATCH_STATE_DIR).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/focuswatch-check.sh" "$@"
rc=$?
if [ "$rc" -eq 1 ]; then
    exit 0
fi
exit 1
