@echo off
rem autofocus-done.bat - tell the focuswatch watcher that an autofocus has just finished.
rem It clears the refocus request; the watcher takes its HFR baseline again from the next frames.
rem Put it right after "Run Autofocus". Extra arguments go to "focuswatch autofocus-done",
rem e.g. --filter Ha --position 15120 --temp-c 3.5
rem Exit code: 0 recorded, 1 state folder not writable, 2 bad arguments or focuswatch not found.
setlocal

rem ---- settings (same as focuswatch-check.bat) ---------------------------------------------
set "FOCUSWATCH_EXE=%LOCALAPPDATA%\Programs\Python\Python311\Scripts\focuswatch.exe"
set "PYTHON_EXE="
rem set "FOCUSWATCH_STATE_DIR=C:\focuswatch-state"
set "FOCUSWATCH_SOURCE=nina-hook"
rem ----------------------------------------------------------------------------------------

if not "%PYTHON_EXE%"=="" goto use_python
if not exist "%FOCUSWATCH_EXE%" goto not_found
"%FOCUSWATCH_EXE%" autofocus-done --source "%FOCUSWATCH_SOURCE%" %*
exit /b %ERRORLEVEL%

:use_python
"%PYTHON_EXE%" -m focuswatch autofocus-done --source "%FOCUSWATCH_SOURCE%" %*
exit /b %ERRORLEVEL%

:not_found
echo autofocus-done.bat: cannot find "%FOCUSWATCH_EXE%" - edit FOCUSWATCH_EXE at the top of this file 1>&2
exit /b 2
