@echo off
rem focuswatch-refocus-gate.bat - the INVERTED check for core N.I.N.A.'s "External Script",
rem which fails on any non-zero exit code.
rem Exit code: 0 refocus due  - the instruction set continues with "Run Autofocus"
rem            1 no refocus (in focus, no state, stale state) or an error
rem              - set this instruction's error behaviour to "Skip current instruction set"
rem                and Attempts to 1, so the autofocus after it is skipped.
rem Settings live in focuswatch-check.bat (same folder).
setlocal
call "%~dp0focuswatch-check.bat" %*
if "%ERRORLEVEL%"=="1" exit /b 0
exit /b 1
