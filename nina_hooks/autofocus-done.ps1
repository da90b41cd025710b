# autofocus-done.ps1 - tell the focuswatch watcher that an autofocus has just finished.
# Clears the refocus request; the watcher takes its HFR baseline again from the next frames.
# Extra arguments go to "focuswatch autofocus-done" (e.g. --filter Ha --position 15120 --temp-c 3.5).
# Exit code: 0 recorded, 1 state folder not writable, 2 bad arguments or focuswatch not found.
# N.I.N.A.: powershell.exe -NoProfile -ExecutionPolicy Bypass -File "C:\path\to\autofocus-done.ps1"

# ---- settings (same as focuswatch-check.ps1) -------------------------------------------------
$FocuswatchExe = Join-Path $env:LOCALAPPDATA "Programs\Python\Python311\Scripts\focuswatch.exe"
$PythonExe = ""
# $env:FOCUSWATCH_STATE_DIR = "C:\focuswatch-state"
$Source = "nina-hook"
# ----------------------------------------------------------------------------------------------

if ($PythonExe) {
    & $PythonExe -m focuswatch autofocus-done --source $Source @args
} elseif (Test-Path -LiteralPath $FocuswatchExe) {
    & $FocuswatchExe autofocus-done --source $Source @args
} else {
    [Console]::Error.WriteLine("autofocus-done.ps1: cannot find '$FocuswatchExe' - edit `$FocuswatchExe at the top")
    exit 2
}
exit $LASTEXITCODE
