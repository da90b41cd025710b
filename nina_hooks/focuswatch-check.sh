#!/usr/bin/env bash
# focuswatch-check.sh — ask the focuswatch watcher whether a refocus is due.
#
# Exit status (passed through from `focuswatch check`):
#   0  in focus (also: no watcher state yet, or the state is stale)
#   1  refocus due            -> run an autofocus, then autofocus-done.sh
#   2  error (unreadable state, focuswatch not found)
# Extra arguments go to `focuswatch check` (e.g. --strict, --clear, --max-age-min 30).
#
# Settings (edit here or set them in the environment):
#   FOCUSWATCH            the focuswatch program (full path if it is not on PATH)
#   FOCUSWATCH_PYTHON     alternatively a Python with focuswatch installed (runs `python -m focuswatch`)
#   FOCUSWATCH_STATE_DIR  state folder, if the watcher uses a non-default one
FOCUSWATCH="${FOCUSWATCH:-focuswatch}"
FOCUSWATCH_PYTHON="${FOCUSWATCH_PYTHON:-}"

if [ -n "$FOCUSWATCH_PYTHON" ]; then
    cmd=("$FOCUSWATCH_PYTHON" -m focuswatch)
elif command -v "$FOCUSWATCH" >/dev/null 2>&1; then
    cmd=("$FOCUSWATCH")
else
    echo "focuswatch-check.sh: cannot find '$FOCUSWATCH'; set FOCUSWATCH to its full path" >&2
    exit 2
fi

"${cmd[@]}" check "$@"
rc=$?
case "$rc" in
    0|1|2) exit "$rc" ;;
    *) echo "focuswatch-check.sh: focuswatch failed to run (exit $rc)" >&2; exit 2 ;;
esac
