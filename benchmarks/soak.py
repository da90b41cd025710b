"""Soak: the real ``focuswatch watch`` process through a rough night (not a test; the test scales it down).

A folder receives small frames in bursts with bad files mixed in; a NINA Advanced API on
127.0.0.1 first refuses connections, then answers one byte at a time, then answers properly
(and, as a NINA hook would, reports each autofocus through ``autofocus-events.jsonl``); the
watcher is killed with SIGKILL twice and restarted each time, and stopped with Ctrl-C
(SIGINT) at the end. Afterwards the journal is checked:

* every good frame is in it exactly once, measured, with exactly one decision;
* every bad file is named once (one ``error`` row, one line on the watcher's output);
* no decision is lost (decisions = measured frames);
* memory does not grow: the watcher's RSS is sampled while it works.

    python benchmarks/soak.py [--frames 1000] [--bad-every 25] [--burst 20]

Prints one JSON object with the figures. ``tests/test_soak.py`` runs :func:`run_soak` with
a few dozen frames.
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- a fake NINA

class FakeNina:
    """NINA's Advanced API on 127.0.0.1: ``refused`` (nothing listens), ``slow`` or ``fine``."""

    def __init__(self, events_file: Path):
        self.events_file = events_file
        self.mode = "refused"
        self.n_af = 0
        self._reserve = socket.socket()
        self._reserve.bind(("127.0.0.1", 0))          # bound, not listening: connections are refused
        self.port = self._reserve.getsockname()[1]
        self._srv: http.server.ThreadingHTTPServer | None = None

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode != "refused" and self._srv is None:
            self._reserve.close()
            nina = self

            class Handler(http.server.BaseHTTPRequestHandler):
                def do_GET(self):  # noqa: N802 - http.server API
                    if nina.mode == "slow":
                        self.send_response(200)
                        self.end_headers()
                        try:
                            for _ in range(300):
                                self.wfile.write(b" ")
                                self.wfile.flush()
                                time.sleep(0.2)
                        except OSError:
                            pass
                        return
                    if "camera" in self.path:
                        body = {"Success": True, "Response": {"IsExposing": False}, "StatusCode": 200}
                    elif "focuser/info" in self.path:
                        body = {"Success": True, "Response": {"Connected": True}, "StatusCode": 200}
                    elif "sequence" in self.path:
                        body = {"Success": False, "Error": "Sequence is not initialized", "StatusCode": 409}
                    elif "auto-focus" not in self.path:
                        body = {"Success": False, "Error": "Unknown route", "StatusCode": 404}
                    else:
                        nina.n_af += 1
                        from focuswatch.io import statefile

                        statefile.append_autofocus_event(nina.events_file, statefile.make_event(source="nina-fake"))
                        body = {"Success": True, "Response": "Autofocus started", "StatusCode": 200, "Type": "API"}
                    data = json.dumps(body).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

                def log_message(self, *a: Any) -> None:
                    pass

            http.server.ThreadingHTTPServer.allow_reuse_address = True
            self._srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
            self._srv.daemon_threads = True
            threading.Thread(target=self._srv.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self._srv is not None:
            self._srv.shutdown()
            self._srv.server_close()
        else:
            self._reserve.close()


# --------------------------------------------------------------------------- frames

def _card(blob: bytes, key: str, value: str) -> bytes:
    i = blob.index(f"{key:<8}= ".encode())
    return blob[:i] + (f"{key:<8}= {value:>20}").ljust(80).encode() + blob[i + 80:]


def bad_files(good: bytes) -> list[tuple[str, bytes]]:
    """Files that must each be named once: (suffix, bytes)."""
    return [
        (".fits", b"NOT A FITS FILE AT ALL " * 200),
        (".fits", _card(good, "NAXIS", "999")),
        (".fits", _card(_card(good, "BSCALE", "1E300"), "BZERO", "1E300")),
        (".fits", _card(good, "NAXIS1", "99999999999999999999")),
        (".fits", good[:len(good) // 2]),                       # truncated for good: given up once
        (".fits", _card(_card(good, "NAXIS", "3"), "NAXIS1", "2000000000").replace(b"GAIN    = ", b"NAXIS3  = ", 1)),
    ]


@dataclass
class SoakResult:
    n_good: int
    n_bad: int
    n_kills: int
    good_once: bool
    bad_once: bool
    decisions_ok: bool
    n_measured: int
    n_decisions: int
    n_refocus: int
    n_trigger_refused: int
    n_trigger_slow: int
    n_trigger_ok: int
    n_autofocus: int
    bad_lines_max: int = 0
    rss_mb: list[float] = field(default_factory=list)
    rss_growth_mb: float = 0.0
    stop_exit_code: int | None = None
    stop_s: float | None = None
    elapsed_s: float = 0.0
    problems: list[str] = field(default_factory=list)


class WatchProcess:
    """``python -m focuswatch watch`` as a child process, with its output in a file."""

    def __init__(self, root: Path, folder: Path, config: Path, n: int):
        self.out = open(root / f"watch{n}.jsonl", "wb")
        self.err = open(root / f"watch{n}.err", "wb")
        env = dict(os.environ, PYTHONPATH=str(REPO / "plugin"), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "focuswatch", "watch", str(folder), "--config", str(config),
             "--state-dir", str(root / "state"), "--json", "--no-diagnose", "--interval-s", "0.1"],
            stdout=self.out, stderr=self.err, env=env, cwd=str(root))

    def rss_mb(self) -> float | None:
        try:
            import psutil

            return psutil.Process(self.proc.pid).memory_info().rss / 1e6
        except Exception:  # noqa: BLE001 - psutil missing or the process gone
            return None

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(30)
        self.close_files()

    def interrupt(self, timeout_s: float = 30.0) -> tuple[int | None, float]:
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = None
        self.close_files()
        return code, time.monotonic() - t0

    def close_files(self) -> None:
        self.out.close()
        self.err.close()


def _journal_rows(db: Path) -> list[tuple[str, str, int]]:
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT f.path, f.status, (SELECT COUNT(*) FROM decisions d WHERE d.frame_id = f.id) "
                           "FROM frames f").fetchall()
    except sqlite3.Error:
        return []
    finally:
        con.close()


def _wait_for(db: Path, n_files: int, timeout_s: float, proc: WatchProcess | None = None,
              rss: list[float] | None = None) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        rows = _journal_rows(db)
        if len({r[0] for r in rows}) >= n_files:
            return True
        if proc is not None and rss is not None:
            v = proc.rss_mb()
            if v is not None:
                rss.append(round(v, 1))
        time.sleep(0.2)
    return False


def run_soak(root: Path, *, n_frames: int = 1000, bad_every: int = 25, burst: int = 20,
             kills_at: tuple[float, ...] = (0.2, 0.45), size_px: int = 160, timeout_s: float = 600.0) -> SoakResult:
    """Run the soak in ``root`` and return its figures (see the module docstring)."""
    from focuswatch import sim
    from focuswatch.io import statefile

    t_start = time.monotonic()
    folder, state = root / "night", root / "state"
    folder.mkdir(parents=True)
    state.mkdir()
    _, events_file = statefile.resolve_paths(state)
    nina = FakeNina(events_file)
    cfg = root / "soak.toml"
    cfg.write_text(f"""[rig]
aperture_mm = 200
focal_length_mm = 1000
pixel_um = 3.76

[policy]
temperature_delta_c = 1.0
max_interval_min = 0

[trigger]
nina_api = true
nina_port = {nina.port}
timeout_s = 0.5
retry_initial_s = 0.3
retry_max_s = 0.6
max_attempts = 1000000

[watch]
give_up_s = 2.0
stuck_after_s = 1.0
burst_quiet_s = 0.3
rescan_interval_s = 1.0
""", encoding="utf-8")
    base = sim.render(sim.SimParams(width_px=size_px, height_px=size_px, n_stars=40, seed=5, star_flux_min_e=3e4))
    good_blob = sim.fits_bytes(base)
    bads = bad_files(good_blob)
    plan: list[tuple[str, bytes, bool]] = []
    n_bad = 0
    for i in range(n_frames):
        temp = 10.0 - 1.5 * (i // max(1, n_frames // 10))
        hdr = dict(base.header, **{"DATE-OBS": f"2026-11-{21 + i // 86400:02d}T"
                                   f"{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}.000",
                                   "FOCTEMP": temp})
        plan.append((f"light_{i:05d}.fits", sim.fits_bytes(replace(base, header=hdr)), True))
        if bad_every and i % bad_every == bad_every - 1:
            suffix, blob = bads[n_bad % len(bads)]
            plan.append((f"bad_{n_bad:04d}{suffix}", blob, False))
            n_bad += 1
    phases = {int(len(plan) * 0.3): "slow", int(len(plan) * 0.55): "fine"}
    kill_points = sorted(int(len(plan) * k) for k in kills_at)
    db = state / "journal.sqlite"
    res = SoakResult(n_good=n_frames, n_bad=n_bad, n_kills=0, good_once=False, bad_once=False, decisions_ok=False,
                     n_measured=0, n_decisions=0, n_refocus=0, n_trigger_refused=0, n_trigger_slow=0,
                     n_trigger_ok=0, n_autofocus=0)
    run = 0
    wp = WatchProcess(root, folder, cfg, run)
    rss: list[float] = []
    steady = False
    try:
        written = 0
        for start in range(0, len(plan), burst):
            for k in range(start, min(len(plan), start + burst)):
                if k in phases:
                    nina.set_mode(phases[k])
                name, blob, _ = plan[k]
                (folder / name).write_bytes(blob)
                written += 1
                if kill_points and written >= kill_points[0]:
                    kill_points.pop(0)
                    time.sleep(0.3)                          # mid-burst: some frames half-handled
                    wp.kill9()
                    res.n_kills += 1
                    run += 1
                    wp = WatchProcess(root, folder, cfg, run)
                    rss, steady = [], False                  # memory is judged on the last run
            # a capture program takes minutes per frame: let the watcher catch up between bursts
            if not _wait_for(db, written, timeout_s):
                res.problems.append(f"timed out after {written} files")
                break
            v = wp.rss_mb()
            if v is not None and steady:
                rss.append(round(v, 1))
            steady = True
        time.sleep(1.0)                                      # a last trigger round, then Ctrl-C
        res.stop_exit_code, res.stop_s = wp.interrupt()
    finally:
        if wp.proc.poll() is None:
            wp.proc.kill()
            wp.close_files()
        nina.close()
    rows = _journal_rows(db)
    by_path: dict[str, list[tuple[str, int]]] = {}
    for path, status, n_dec in rows:
        by_path.setdefault(Path(path).name, []).append((status, n_dec))
    goods = [n for n, _, g in plan if g]
    badn = [n for n, _, g in plan if not g]
    named: dict[str, int] = {}
    for out in sorted(root.glob("watch*.jsonl")):
        for line in out.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and row.get("status") == "error":
                name = Path(str(row.get("file"))).name
                named[name] = named.get(name, 0) + 1
    res.bad_lines_max = max(named.values(), default=0)
    res.good_once = all(by_path.get(n) == [("measured", 1)] for n in goods)
    res.bad_once = all(by_path.get(n) == [("error", 0)] for n in badn)
    res.n_measured = sum(1 for r in rows if r[1] == "measured")
    res.n_decisions = sum(r[2] for r in rows)
    res.decisions_ok = res.n_decisions == res.n_measured == len(goods)
    for n in goods:
        if by_path.get(n) != [("measured", 1)]:
            res.problems.append(f"{n}: {by_path.get(n)}")
    for n in badn:
        if by_path.get(n) != [("error", 0)]:
            res.problems.append(f"{n}: {by_path.get(n)}")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        res.n_refocus = con.execute("SELECT COUNT(*) FROM decisions WHERE decision = 'refocus'").fetchone()[0]
        msgs = [(r[0], r[1]) for r in con.execute("SELECT ok, message FROM triggers").fetchall()]
        res.n_autofocus = con.execute("SELECT COUNT(*) FROM autofocus_events").fetchone()[0]
    finally:
        con.close()
    res.n_trigger_refused = sum(1 for ok, m in msgs if not ok and "refused" in m)
    res.n_trigger_slow = sum(1 for ok, m in msgs if not ok and ("did not answer" in m or "deadline" in m))
    res.n_trigger_ok = sum(1 for ok, _ in msgs if ok)
    # memory: the last run's RSS after each burst once it had caught up (imports and caches warm)
    res.rss_mb = rss
    if len(rss) >= 2:
        res.rss_growth_mb = round(rss[-1] - rss[0], 1)
    res.elapsed_s = round(time.monotonic() - t_start, 1)
    return res


def main(argv: list[str] | None = None) -> int:
    import tempfile
    from dataclasses import asdict

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--bad-every", type=int, default=25)
    ap.add_argument("--burst", type=int, default=20)
    ap.add_argument("--size-px", type=int, default=160)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fw-soak-") as tmp:
        res = run_soak(Path(tmp), n_frames=args.frames, bad_every=args.bad_every, burst=args.burst,
                       size_px=args.size_px)
    d = asdict(res)
    rss = d.pop("rss_mb")
    d["rss_mb_first_last_max"] = [rss[0], rss[-1], max(rss)] if rss else []
    d["problems"] = d["problems"][:20]
    print(json.dumps(d, indent=1))
    return 0 if res.good_once and res.bad_once and res.decisions_ok and not res.problems else 1


if __name__ == "__main__":
    sys.exit(main())
