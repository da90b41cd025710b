@echo off
rem focuswatch-check.bat - ask the focuswatch watcher whether a refocus is due.
rem For N.I.N.A. Sequencer Powerups "External Script +" (exit code lands in EXITCODE).
rem Exit code: 0 in focus (also: no watcher state yet, or stale state)
rem            1 refocus due  - run the autofocus, then autofocus-done.bat
rem            2 error        - unreadable state, focuswatch not found
rem Extra arguments are passed to "focuswatch check", e.g. --strict or --max-age-min 30.
rem Core N.I.N.A. "External Script" FAILS on any non-zero exit: use focuswatch-refocus-gate.bat there.
setlocal

rem ---- settings -------------------------------------------------------------------------
rem Full path of focuswatch.exe (pip puts it in the Scripts folder of your Python):
set "FOCUSWATCH_EXE=%LOCALAPPDATA%\Programs\Python\Python311\Scripts\focuswatch.exe"
rem ...or the full path of a python.exe that has focuswatch installed (used when not empty):
set "PYTHON_EXE="
rem Only if the watcher runs with a non-default state folder:
rem set "FOCUSWATCH_STATE_DIR=C:\focuswatch-state"
rem ----------------------------------------------------------------------------------------

if not "%PYTHON_EXE%"=="" goto use_python
if not exist "%FOCUSWATCH_EXE%" goto not_found
"%FOCUSWATCH_EXE%" check %*
goto done

:use_python
"%PYTHON_EXE%" -m focuswatch check %*
goto done

:not_found
echo focuswatch-check.bat: cannot find "%FOCUSWATCH_EXE%" - edit FOCUSWATCH_EXE at the top of this file 1>&2
exit /b 2

:done
set "RC=%ERRORLEVEL%"
if "%RC%"=="0" exit /b 0
if "%RC%"=="1" exit /b 1
exit /b 2
