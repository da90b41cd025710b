# focuswatch-check.ps1 - ask the focuswatch watcher whether a refocus is due.
# Exit code: 0 in focus (also: no watcher state yet, or stale state), 1 refocus due, 2 error.
# Extra arguments are passed to "focuswatch check" (e.g. --strict, --max-age-min 30).
#
# N.I.N.A. runs programs, not .ps1 files: give it
#   "C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe" -NoProfile -ExecutionPolicy Bypass -File "C:\path\to\focuswatch-check.ps1"
# Core N.I.N.A. "External Script" fails on any non-zero exit: use focuswatch-refocus-gate.ps1 there.

# ---- settings ------------------------------------------------------------------------------
# Full path of focuswatch.exe (pip puts it in the Scripts folder of your Python):
$FocuswatchExe = Join-Path $env:LOCALAPPDATA "Programs\Python\Python311\Scripts\focuswatch.exe"
# ...or the full path of a python.exe that has focuswatch installed (used when not empty):
$PythonExe = ""
# Only if the watcher runs with a non-default state folder:
# $env:FOCUSWATCH_STATE_DIR = "C:\focuswatch-state"
# ----------------------------------------------------------------------------------------------

if ($PythonExe) {
    & $PythonExe -m focuswatch check @args
} elseif (Test-Path -LiteralPath $FocuswatchExe) {
    & $FocuswatchExe check @args
} else {
    [Console]::Error.WriteLine("focuswatch-check.ps1: cannot find '$FocuswatchExe' - edit `$FocuswatchExe at the top")
    exit 2
}
$rc = $LASTEXITCODE
if ($rc -eq 0 -or $rc -eq 1) { exit $rc }
exit 2
