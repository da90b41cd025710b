# focuswatch-refocus-gate.ps1 - the INVERTED check for core N.I.N.A.'s "External Script",
# which fails on any non-zero exit code.
# Exit code: 0 refocus due (the instruction set continues with "Run Autofocus"),
#            1 no refocus or an error (error behaviour "Skip current instruction set" skips the autofocus).
# Settings live in focuswatch-check.ps1 (same folder).
& (Join-Path $PSScriptRoot "focuswatch-check.ps1") @args
if ($LASTEXITCODE -eq 1) { exit 0 }
exit 1
