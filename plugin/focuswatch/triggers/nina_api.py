"""The ``nina-api`` trigger: NINA's Advanced API (HTTP), with deadline-bound reads."""
from __future__ import annotations


import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Mapping

from focuswatch.triggers.base import Trigger, TriggerRequest, TriggerResult


NINA_AF_PATH = "/v2/api/equipment/focuser/auto-focus"


NINA_CAMERA_PATH = "/v2/api/equipment/camera/info"


NINA_FOCUSER_PATH = "/v2/api/equipment/focuser/info"


NINA_SEQUENCE_STATE_PATH = "/v2/api/sequence/state"


NINA_LAST_AF_PATH = "/v2/api/equipment/focuser/last-af"


# --------------------------------------------------------------------------- HTTP against a deadline

def read_before(resp: Any, deadline: float, clock: Callable[[], float] = time.monotonic,
                chunk_bytes: int = 65536) -> bytes:
    """Read an ``http.client`` response body, raising ``TimeoutError`` once ``deadline`` passes.

    Each read waits at most the time left (the socket timeout is lowered as it goes), so a
    server trickling one byte a second cannot keep it past the deadline.
    """
    parts: list[bytes] = []
    while True:
        left = deadline - clock()
        if left <= 0:
            raise TimeoutError("the answer did not arrive before the overall deadline")
        sock = getattr(getattr(getattr(resp, "fp", None), "raw", None), "_sock", None)
        if sock is not None:
            try:
                sock.settimeout(max(0.01, left))
            except OSError:
                pass
        reader = getattr(resp, "read1", None) or resp.read
        data = reader(chunk_bytes)
        if not data:
            return b"".join(parts)
        parts.append(data)


class _NinaFailure(Exception):
    def __init__(self, message: str, **detail: Any):
        super().__init__(message)
        self.detail = detail


class NinaApiTrigger(Trigger):
    """Start NINA's autofocus through the Advanced API plugin (``/v2/api``).

    The API answers every route with HTTP 200 and ``{"Response", "Error", "StatusCode",
    "Success", "Type"}``; newer versions may also set the HTTP status. Both are handled: the
    JSON ``Success`` decides, an HTTP error without JSON is a failure with its status.
    """

    name = "nina-api"

    def __init__(self, host: str = "127.0.0.1", port: int = 1888, *, timeout_s: float = 5.0,
                 check_camera: bool = True, check_sequence: bool = True, check_focuser: bool = True):
        self.host, self.port, self.timeout_s, self.check_camera = host, int(port), float(timeout_s), check_camera
        self.check_sequence, self.check_focuser = check_sequence, check_focuser
        # No proxies: NINA is on this machine or the LAN, and an HTTP_PROXY must not eat the call.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def where(self) -> str:
        return f"NINA at {self.host}:{self.port}"

    def url(self, path: str, query: Mapping[str, str] | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        q = f"?{urllib.parse.urlencode(query)}" if query else ""
        return f"http://{host}:{self.port}{path}{q}"

    def describe(self) -> str:
        return f"nina-api: GET {self.url(NINA_AF_PATH)}"

    def _get_json(self, path: str) -> dict[str, Any]:
        """GET ``path`` and return the decoded JSON object, or raise _NinaFailure with a clear message."""

        url = self.url(path)
        status: int | None = None
        deadline = time.monotonic() + self.budget_s(self.timeout_s)  # connect + read, from the start
        try:
            with self._opener.open(url, timeout=self.budget_s(self.timeout_s)) as resp:
                status = resp.status
                body = read_before(resp, deadline)
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                body = exc.read()
            except OSError:
                body = b""
            finally:
                exc.close()
            parsed = _loads_object(body)
            if parsed is None:
                raise _NinaFailure(f"{self.where} answered HTTP {exc.code} {exc.reason} for {path}",
                                   http_status=exc.code, url=url) from None
            return {**parsed, "_http_status": status}
        except urllib.error.URLError as exc:
            raise _NinaFailure(self._explain(exc.reason), url=url) from None
        except (TimeoutError, socket.timeout):
            raise _NinaFailure(f"{self.where} did not answer within {self.timeout_s:g} s ({path})",
                               url=url) from None
        except (ConnectionError, OSError) as exc:
            raise _NinaFailure(self._explain(exc), url=url) from None
        parsed = _loads_object(body)
        if parsed is None:
            snippet = body[:80].decode("utf-8", "replace").strip()
            raise _NinaFailure(f"{self.where} answered {path} with something that is not the Advanced API's "
                               f"JSON ({snippet!r}); is port {self.port} the Advanced API plugin?",
                               http_status=status, url=url)
        return {**parsed, "_http_status": status}

    def _explain(self, reason: Any) -> str:
        if isinstance(reason, ConnectionRefusedError):
            # ninaAPI/AdvancedAPI.cs (2.2.x): ActualPort = GetNearestAvailablePort(PreferredPort), and
            # PreferredPort is stored per NINA profile: the server may listen on another port.
            return (f"{self.where} refused the connection — is NINA running with the Advanced API plugin "
                    f"enabled? The plugin moves to the next free port when {self.port} is taken, and its port "
                    "is a per-profile setting: check the port shown in NINA (Plugins → Advanced API) and set "
                    "[trigger] nina_port")
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return f"{self.where} did not answer within {self.timeout_s:g} s"
        if isinstance(reason, socket.gaierror):
            return f"{self.where}: unknown host {self.host!r} ({reason.strerror or reason})"
        return f"{self.where} is unreachable ({getattr(reason, 'strerror', None) or reason})"

    @staticmethod
    def _api_error(answer: Mapping[str, Any]) -> str:
        err = answer.get("Error") or answer.get("Response") or "no error text"
        code = answer.get("StatusCode") or answer.get("_http_status")
        return f"{err} (status {code})" if code else str(err)

    def _fire(self, request: TriggerRequest) -> TriggerResult:
        try:
            if self.check_focuser:
                blocked = self._focuser_blocked()
                if blocked is not None:
                    return blocked
            if self.check_sequence:
                blocked = self._sequence_blocked()
                if blocked is not None:
                    return blocked
            if self.check_camera:
                cam = self._get_json(NINA_CAMERA_PATH)
                info = cam.get("Response")
                if cam.get("Success") is True and isinstance(info, Mapping) and info.get("IsExposing") is True:
                    return self._fail(f"{self.where}: the camera is exposing; autofocus deferred so the frame "
                                      "is not ruined (will retry)", camera=_short(info), deferred=True)
            answer = self._get_json(NINA_AF_PATH)
        except _NinaFailure as exc:
            return self._fail(str(exc), **exc.detail)
        answer_clean = {k: v for k, v in answer.items() if not k.startswith("_")}
        if answer.get("Success") is not True:
            # "Focuser not connected" comes as StatusCode 409 in the body (ninaAPI
            # WebService/V2/Equipment/Focuser.cs): a retry only opens another failing autofocus.
            conflict = answer.get("StatusCode") == 409 or answer.get("_http_status") == 409
            return self._fail(f"{self.where} refused the autofocus: {self._api_error(answer)}",
                              retryable=not conflict, answer=answer_clean)
        text = answer.get("Response")
        if not isinstance(text, str):
            return self._fail(f"{self.where} answered the autofocus call without a 'Response' text "
                              f"({answer_clean!r:.120})", answer=answer_clean)
        return self._ok(f"{self.where}: {text}", answer=answer_clean)

    def _focuser_blocked(self) -> TriggerResult | None:
        """A failed result when NINA's focuser is not connected (not retried), else None."""
        try:
            foc = self._get_json(NINA_FOCUSER_PATH)
        except _NinaFailure as exc:
            if exc.detail.get("http_status") == 404:
                return None  # an Advanced API without this route: the autofocus call will tell
            raise
        info = foc.get("Response")
        if foc.get("Success") is True and isinstance(info, Mapping) and info.get("Connected") is False:
            return self._fail(f"{self.where}: NINA's focuser is not connected; connect it in NINA (Equipment → "
                              "Focuser) — not retried", retryable=False, focuser=_short(info))
        return None

    def _sequence_blocked(self) -> TriggerResult | None:
        """A deferral while an instruction of NINA's sequence is RUNNING, else None."""
        try:
            seq = self._get_json(NINA_SEQUENCE_STATE_PATH)
        except _NinaFailure as exc:
            if exc.detail.get("http_status") == 404:
                return None  # older Advanced API: no sequence/state route
            raise
        if seq.get("Success") is not True:
            return None  # "Sequence is not initialized" (409): no sequence, nothing to collide with
        running = running_sequence_items(seq.get("Response"))
        if not running:
            return None
        names = ", ".join(running[:3])
        if any("autofocus" in n.lower() for n in running):
            return self._fail(f"{self.where}: NINA is already running an autofocus ({names}); not starting "
                              "another", deferred=True, running=running)
        return self._fail(f"{self.where}: NINA's sequence is running ({names}); an Advanced API autofocus would "
                          "collide with it, so it is deferred (will retry; the in-sequence hooks of docs/nina.md "
                          "act between exposures)", deferred=True, running=running)


def running_sequence_items(tree: Any) -> list[str]:
    """Names of the instructions and triggers with ``Status == "RUNNING"`` in ``sequence/state``.

    The Advanced API (ninaAPI WebService/V2/Application/Sequence.cs, ``SequenceState``) answers
    a list: ``{"GlobalTriggers": [...]}`` then the containers, each ``{"Name": "..._Container",
    "Status", "Items", "Conditions", "Triggers"}``; leaves are ``{"Name", "Status", ...}``.
    A running container alone is the sequence stepping between instructions; only running
    instructions (and triggers, e.g. an autofocus trigger at work) are listed, deepest first.
    """
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for x in node:
                walk(x)
            return
        if not isinstance(node, Mapping):
            return
        for key in ("Items", "Triggers", "GlobalTriggers"):
            if key in node:
                walk(node[key])
        name = node.get("Name")
        is_container = "Items" in node or (isinstance(name, str) and name.endswith("_Container"))
        if not is_container and isinstance(name, str) and str(node.get("Status", "")).upper() == "RUNNING":
            found.append(name)

    walk(tree)
    return found


def _loads_object(body: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _short(info: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("Name", "Connected", "IsExposing", "CameraState", "ExposureEndTime")
    return {k: info[k] for k in keys if k in info}
