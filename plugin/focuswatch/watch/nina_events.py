"""NINA's own events, live and after the fact, from the Advanced API plugin (I/O at the edge).

Read from the plugin's source (christian-photo/ninaAPI 2.2.x):

- WebSocket ``ws://HOST:PORT/v2/socket`` (``WebService/V2/WebSocketV2.cs``): every message is
  ``{"Response": {...}, "Error": "", "StatusCode": 200, "Success": true, "Type": "Socket"}``
  serialised by Json.NET (NaN is the *string* ``"NaN"``).
- ``IMAGE-SAVE`` (``WebService/V2/Application/Image.cs``, ``ImageWatcher.ImageSaved``) is sent
  from NINA's ``ImageSaved`` event, i.e. after the file is written: ``Response`` is
  ``{"Event": "IMAGE-SAVE", "ImageStatistics": {ExposureTime, ImageType, Filter, RmsText,
  Temperature (camera), CameraName, TargetName, Gain, Offset, Date (DateTime.Now, local with
  offset), TelescopeName, FocalLength, StDev, Mean, Median, Min, Max, Stars, HFR, HFRStDev,
  IsBayered, Filename (base name only)}}``. NINA's HFR is its own (flux-weighted mean radius, px).
- ``AUTOFOCUS-STARTING``, ``AUTOFOCUS-POINT-ADDED`` (``HFR``, ``Position``) and
  ``AUTOFOCUS-FINISHED`` (``WebService/V2/Equipment/Focuser.cs``, ``FocuserWatcher``):
  ``{"Event": name, ...}``; AUTOFOCUS-FINISHED comes from ``UpdateEndAutoFocusRun``, which
  NINA calls only after a *successful* run.
- ``GET /v2/api/image-history?all=true`` lists the same ``ImageStatistics`` objects for every
  image since NINA started (``Response`` is the list).
- The server listens on the profile's port (default 1888) or the next free one.

:class:`NinaEventSource` is a thread that keeps a WebSocket open (reconnecting with back-off)
and hands out frozen event values; :func:`image_history` catches up after a restart;
:func:`load_image_history` reads a saved ``image-history`` JSON for ``replay``.
"""
from __future__ import annotations

import json
import logging
import math
import queue
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Union

from focuswatch.errors import FrameError, TriggerError
from focuswatch.model.records import Record, parse_iso

log = logging.getLogger("focuswatch.watch.nina_events")

SOCKET_PATH = "/v2/socket"
IMAGE_HISTORY_PATH = "/v2/api/image-history"
DEFAULT_PORT = 1888


# --------------------------------------------------------------------------- events

def _num(v: Any) -> float | None:
    """A finite number from a Json.NET value (numbers, "NaN", numeric strings); else None."""
    if v is None or isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _iso(v: Any) -> str | None:
    """ISO time text, aware (a naive NINA time is this machine's local time); None if unreadable."""
    dt = parse_iso(v, naive_is_local=True) if isinstance(v, str) else None
    return dt.isoformat() if dt else None


def _epoch(iso: str | None) -> float | None:
    dt = parse_iso(iso, naive_is_local=True)
    return dt.timestamp() if dt else None


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass(frozen=True)
class ImageSaved(Record):
    """NINA saved an image (file complete). ``hfr_px``/``hfr_sd_px`` are NINA's HFR and its spread
    in pixels (``None`` when NINA found no stars: it sends "NaN"); ``time`` is NINA's ``Date``."""

    filename: str | None
    hfr_px: float | None
    hfr_sd_px: float | None
    n_stars: int
    filter_name: str | None
    exposure_s: float | None
    time: str | None
    image_type: str | None = None
    target_name: str | None = None
    camera_temp_c: float | None = None

    @property
    def time_s(self) -> float | None:
        return _epoch(self.time)

    @property
    def is_light(self) -> bool:
        return (self.image_type or "LIGHT").upper() == "LIGHT"


@dataclass(frozen=True)
class AutofocusStarting(Record):
    time: str


@dataclass(frozen=True)
class AutofocusPointAdded(Record):
    time: str
    position: float | None = None
    hfr_px: float | None = None


@dataclass(frozen=True)
class AutofocusFinished(Record):
    """Sent by the Advanced API only for successful runs (see the module docstring)."""

    time: str


@dataclass(frozen=True)
class SourceStatus(Record):
    """The WebSocket connected (``connected``) or was lost / could not be opened (``message``)."""

    connected: bool
    message: str
    time: str = ""


NinaEvent = Union[ImageSaved, AutofocusStarting, AutofocusPointAdded, AutofocusFinished, SourceStatus]


def image_from_stats(stats: Mapping[str, Any]) -> ImageSaved:
    """An :class:`ImageSaved` from one ``ImageStatistics`` / image-history object."""
    name = stats.get("Filename")
    stars = _num(stats.get("Stars"))
    filt = stats.get("Filter")
    return ImageSaved(filename=name if isinstance(name, str) and name else None,
                      hfr_px=_num(stats.get("HFR")), hfr_sd_px=_num(stats.get("HFRStDev")),
                      n_stars=int(stars) if stars is not None else 0,
                      filter_name=filt if isinstance(filt, str) and filt else None,
                      exposure_s=_num(stats.get("ExposureTime")), time=_iso(stats.get("Date")),
                      image_type=stats.get("ImageType") if isinstance(stats.get("ImageType"), str) else None,
                      target_name=stats.get("TargetName") if isinstance(stats.get("TargetName"), str) else None,
                      camera_temp_c=_num(stats.get("Temperature")))


def parse_message(text: str | bytes, *, received: str | None = None) -> NinaEvent | None:
    """One WebSocket message as an event, ``None`` for events focuswatch does not use.

    ``received`` (ISO) stands in for events that carry no time of their own (the autofocus
    events on the socket); raises ``ValueError`` for a message that is not the plugin's JSON.
    """
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not an Advanced API message (not a JSON object)")
    body = data.get("Response", data)
    if not isinstance(body, dict):
        return None
    name = body.get("Event")
    when = _iso(body.get("Time")) or received or _now_iso()
    if name == "IMAGE-SAVE":
        stats = body.get("ImageStatistics")
        return image_from_stats(stats) if isinstance(stats, dict) else None
    if name == "AUTOFOCUS-STARTING":
        return AutofocusStarting(when)
    if name == "AUTOFOCUS-POINT-ADDED":
        return AutofocusPointAdded(when, _num(body.get("Position")), _num(body.get("HFR")))
    if name == "AUTOFOCUS-FINISHED":
        return AutofocusFinished(when)
    return None


def images_from_history(data: Any) -> list[ImageSaved]:
    """The images of an ``image-history?all=true`` answer (wrapped or the bare list)."""
    if isinstance(data, dict):
        if data.get("Success") is False:
            raise ValueError(f"the Advanced API answered with an error: {data.get('Error') or 'no error text'}")
        data = data.get("Response")
    if not isinstance(data, list):
        raise ValueError("not an Advanced API image history (expected a list of image statistics)")
    return [image_from_stats(x) for x in data if isinstance(x, dict)]


def parse_host_port(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST[:PORT]`` (``[v6]:PORT`` too) as ``(host, port)``; ValueError naming what is wrong.

    >>> parse_host_port("192.168.1.20"), parse_host_port("nina-pc:1889")
    (('192.168.1.20', 1888), ('nina-pc', 1889))
    """
    t = text.strip()
    if not t:
        raise ValueError("empty host")
    host, port = t, default_port
    if t.startswith("["):
        host, _, rest = t[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif t.count(":") == 1:
        host, p = t.split(":")
        port = int(p)
    if not host or not 1 <= port <= 65535:
        raise ValueError(f"{text!r} is not HOST[:PORT]")
    return host, port


def _base(host: str, port: int, scheme: str) -> str:
    h = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{scheme}://{h}:{port}"


def image_history(host: str, port: int = DEFAULT_PORT, *, timeout_s: float = 10.0) -> list[ImageSaved]:
    """Every image NINA saved since it started (``GET /v2/api/image-history?all=true``).

    Raises :class:`TriggerError` with a one-line reason when NINA cannot be asked.
    """
    url = _base(host, port, "http") + IMAGE_HISTORY_PATH + "?" + urllib.parse.urlencode({"all": "true"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        exc.close()
        raise TriggerError(f"NINA at {host}:{port} answered HTTP {exc.code} for the image history") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TriggerError(f"NINA at {host}:{port} is unreachable for the image history ({reason}); is the "
                           "Advanced API plugin enabled on that port (it moves to the next free port when "
                           "its own is taken)?") from None
    try:
        return images_from_history(json.loads(body.decode("utf-8-sig")))
    except (UnicodeDecodeError, ValueError) as exc:
        raise TriggerError(f"NINA at {host}:{port}: unreadable image history ({exc})") from None


def load_image_history(path: str | Path) -> list[ImageSaved]:
    """A saved ``image-history?all=true`` JSON (as the API answers it, or its ``Response`` list)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise FrameError(p, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FrameError(p, f"cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise FrameError(p, f"not valid JSON (line {exc.lineno}: {exc.msg}); save the answer of "
                            "/v2/api/image-history?all=true") from None
    try:
        return images_from_history(data)
    except ValueError as exc:
        raise FrameError(p, str(exc)) from None


# --------------------------------------------------------------------------- live source

def backoff_delays(initial_s: float, max_s: float, factor: float = 2.0) -> Iterator[float]:
    """Reconnect delays: ``initial_s``, doubled each time, capped at ``max_s``.

    >>> import itertools; list(itertools.islice(backoff_delays(1, 5), 5))
    [1.0, 2.0, 4.0, 5.0, 5.0]
    """
    d = float(initial_s)
    while True:
        yield min(d, float(max_s))
        d *= factor


class NinaEventSource:
    """A thread reading NINA's Advanced API WebSocket; events come out of :meth:`get` (or ``on_event``).

    It reconnects with back-off (``reconnect_initial_s`` doubling up to ``reconnect_max_s``;
    the delay resets after a connection that worked) and reports each connect / loss as a
    :class:`SourceStatus`, so the caller can catch up with :func:`image_history`.
    Messages that are not the plugin's JSON are logged and skipped.
    """

    def __init__(self, host: str, port: int = DEFAULT_PORT, *, on_event: Callable[[NinaEvent], None] | None = None,
                 open_timeout_s: float = 5.0, reconnect_initial_s: float = 1.0, reconnect_max_s: float = 60.0):
        self.host, self.port = host, int(port)
        self.on_event = on_event
        self.open_timeout_s = float(open_timeout_s)
        self.reconnect_initial_s, self.reconnect_max_s = float(reconnect_initial_s), float(reconnect_max_s)
        self._queue: "queue.Queue[NinaEvent]" = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.n_connects = 0

    @property
    def url(self) -> str:
        return _base(self.host, self.port, "ws") + SOCKET_PATH

    def start(self) -> "NinaEventSource":
        self._thread = threading.Thread(target=self._run, name="nina-events", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def __enter__(self) -> "NinaEventSource":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def get(self, timeout_s: float | None = None) -> NinaEvent | None:
        """The next event, ``None`` when none arrived within ``timeout_s``."""
        try:
            return self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def _emit(self, ev: NinaEvent) -> None:
        self._queue.put(ev)
        if self.on_event is not None:
            try:
                self.on_event(ev)
            except Exception:  # noqa: BLE001 - a consumer bug must not kill the reader
                log.exception("handling a NINA event failed")

    def _run(self) -> None:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
        from websockets.sync.client import connect

        delays = backoff_delays(self.reconnect_initial_s, self.reconnect_max_s)
        while not self._stop.is_set():
            try:
                # proxy=None: NINA is on this machine or the LAN, an HTTP(S)_PROXY must not eat it
                with connect(self.url, open_timeout=self.open_timeout_s, close_timeout=2, proxy=None,
                             max_size=None) as ws:
                    self.n_connects += 1
                    delays = backoff_delays(self.reconnect_initial_s, self.reconnect_max_s)
                    self._emit(SourceStatus(True, f"connected to {self.url}", _now_iso()))
                    while not self._stop.is_set():
                        try:
                            msg = ws.recv(timeout=0.25)
                        except TimeoutError:
                            continue
                        try:
                            ev = parse_message(msg, received=_now_iso())
                        except ValueError as exc:
                            log.warning("NINA sent a message that is not the Advanced API's JSON (%s)", exc)
                            continue
                        if ev is not None:
                            self._emit(ev)
                    return
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, InvalidURI) as exc:
                if self._stop.is_set():
                    return
                delay = next(delays)
                why = str(exc) or type(exc).__name__
                self._emit(SourceStatus(False, f"NINA's WebSocket {self.url}: {why}; reconnecting in {delay:g} s "
                                               "(is the Advanced API plugin enabled on that port?)", _now_iso()))
                self._stop.wait(delay)


__all__ = ["ImageSaved", "AutofocusStarting", "AutofocusPointAdded", "AutofocusFinished", "SourceStatus",
           "NinaEvent", "NinaEventSource", "image_from_stats", "parse_message", "images_from_history",
           "image_history", "load_image_history", "parse_host_port", "backoff_delays", "SOCKET_PATH",
           "IMAGE_HISTORY_PATH", "DEFAULT_PORT"]
