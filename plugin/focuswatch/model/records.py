"""One schema for every result: ``to_dict()`` for ``--json``, the journal and replay,
``from_dict()`` to read them back, and one JSON-safe encoder.

Results are frozen dataclasses; they inherit :class:`Record` instead of each writing the
same two methods. ``from_dict`` is strict where it matters and lenient where files age:

* a required field that is missing, or a value of the wrong JSON type (a string where a
  number belongs, a list where a record belongs), raises :class:`ValueError` naming the
  class and the field;
* a ``kind`` tag that names another record type, or a ``schema`` newer than
  :data:`SCHEMA_VERSION`, raises too;
* keys it does not know are ignored (older or newer JSON still loads), and ``null`` in a
  plain ``float`` field reads back as NaN (the encoder wrote NaN as null).

Nested records, tuples of records and optional records are rebuilt from the type hints, so
a saved night re-renders without re-measuring.

Every JSON line the CLI prints carries ``"kind"`` and ``"schema"`` (:func:`tagged`);
the kinds are listed in ``docs/schema.md``. Times are ``time_s`` (seconds since the epoch,
UTC) inside; ISO 8601 only at the edges (state file, event log, human text).

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class P(Record):
...     x_px: float
...     tags: tuple[str, ...] = ()
>>> P.from_dict({"x_px": 1.5, "tags": ["a"], "unknown": 0})
P(x_px=1.5, tags=('a',))
>>> json_safe({"a": float("nan"), "b": (1, 2)})
{'a': None, 'b': [1, 2]}
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
import types
import typing
from datetime import datetime, timezone
from pathlib import PurePath
from typing import Any, ClassVar, Mapping, TypeVar

R = TypeVar("R", bound="Record")

#: Version of the JSON records (the ``"schema"`` of every JSON line). Bumped when a field
#: changes meaning; a reader refuses records from a newer schema.
SCHEMA_VERSION = 1

#: The ``kind`` of every JSON line the CLI prints (documented in docs/schema.md).
KINDS = ("frame", "diagnosis", "night", "decision", "summary", "rules", "run", "autofocus", "trigger",
         "zone", "grade", "report", "check", "autofocus-done", "demo", "demo-frame", "sim-frame", "bahtinov",
         "af", "error", "archive-run", "archive-summary", "archive-night", "archive-rig", "archive-refocus",
         "archive-files", "connection")


# --------------------------------------------------------------------------- encoding

def json_safe(obj: Any) -> Any:
    """A value made JSON-safe: NaN/inf become null, tuples lists, paths strings, numpy
    scalars and arrays Python values, records their ``to_dict()``.

    The one cleaner for ``--json``, the journal, the state file and the simulator's truth.
    """
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return json_safe(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return json_safe(dataclasses.asdict(obj))
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays and scalars
        try:
            return json_safe(obj.tolist())
        except (TypeError, ValueError):
            return str(obj)
    if hasattr(obj, "item") and callable(obj.item):
        try:
            return json_safe(obj.item())
        except (TypeError, ValueError):
            return str(obj)
    return obj


def dumps(obj: Any, **kw: Any) -> str:
    """Strict JSON text of ``obj`` (through :func:`json_safe`; never NaN)."""
    kw.setdefault("ensure_ascii", False)
    return json.dumps(json_safe(obj), allow_nan=False, **kw)


def tagged(kind: str, payload: Mapping[str, Any] | Any) -> dict[str, Any]:
    """``payload`` (a mapping or a record) with ``"kind"`` and ``"schema"`` in front.

    A payload's own ``kind`` key (``rules`` rows have one) is kept under ``kind`` only when
    no tag is given; the tag wins otherwise.
    """
    body = payload.to_dict() if hasattr(payload, "to_dict") else dict(payload)
    return {"kind": kind, "schema": SCHEMA_VERSION, **{k: v for k, v in body.items() if k not in ("kind", "schema")}}


# --------------------------------------------------------------------------- decoding

class TypeMismatch(ValueError):
    """A value that does not fit its type hint: ``where`` (``Class.field``, ``[section] key``),
    the ``value`` and what was wanted (``want``, in words)."""

    def __init__(self, where: str, value: Any, want: str):
        self.where, self.value, self.want = where, value, want
        super().__init__(f"{where}: expected {want}, got {repr(value)[:60]}")


def _fail(where: str, value: Any, want: str) -> TypeMismatch:
    return TypeMismatch(where, value, want)


def revive(value: Any, hint: Any, where: str = "value", *, limit: float | None = None) -> Any:
    """``value`` (from JSON or TOML) checked against the type hint ``hint`` and rebuilt.

    The one reflector over type hints: :meth:`Record.from_dict` reads records with it and
    :func:`focuswatch.config.section_to_dataclass` reads settings with it. Numbers become
    ``float``/``int`` (a whole float is an ``int``; a bool is neither), lists become the
    ``tuple``/``list`` the hint names (items checked), objects become nested records
    (``from_dict``), ``null`` in a plain ``float`` is NaN (the encoder writes NaN as null).
    A type it does not know passes unchanged.

    ``limit``: every number must be finite and at most this in size (settings: ``nan``
    silently switched a rule off, ``1e20`` made one never fire); ``None``: any number.
    Raises :class:`TypeMismatch` (a ``ValueError``) naming ``where``.
    """
    if hint is Any or hint is typing.Any:
        return value
    if value is None:
        return math.nan if hint is float else None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or (sys.version_info >= (3, 10) and origin is types.UnionType):
        real = [a for a in args if a is not type(None)]
        for a in real:
            if isinstance(a, type) and dataclasses.is_dataclass(a) and isinstance(value, Mapping):
                return revive(value, a, where, limit=limit)
        if len(real) == 1:
            return revive(value, real[0], where, limit=limit)
        for a in real:
            try:
                return revive(value, a, where, limit=limit)
            except TypeMismatch:
                continue
        raise _fail(where, value, " or ".join(getattr(a, "__name__", str(a)) for a in real))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise _fail(where, value, f"an object ({hint.__name__})")
        return hint.from_dict(value) if hasattr(hint, "from_dict") else hint(**value)
    if origin is tuple or hint is tuple:
        if not isinstance(value, (list, tuple)):
            raise _fail(where, value, "a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(revive(v, args[0], f"{where}[{i}]", limit=limit) for i, v in enumerate(value))
        if args:
            if len(args) != len(value):
                raise _fail(where, value, f"a list of {len(args)}")
            return tuple(revive(v, a, f"{where}[{i}]", limit=limit) for i, (v, a) in enumerate(zip(value, args)))
        return tuple(value)
    if origin is list or hint is list:
        if not isinstance(value, (list, tuple)):
            raise _fail(where, value, "a list")
        return [revive(v, args[0], f"{where}[{i}]", limit=limit) if args else v for i, v in enumerate(value)]
    if origin in (dict, Mapping) or hint in (dict, Mapping) or origin is typing.Mapping or \
            getattr(origin, "__name__", "") == "Mapping":
        if not isinstance(value, Mapping):
            raise _fail(where, value, "an object")
        return dict(value)
    if hint is float or hint is int:
        return _number(value, hint, where, limit)
    if hint is bool:
        if not isinstance(value, bool):
            raise _fail(where, value, "true or false")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise _fail(where, value, "a string")
        return value
    return value


def _number(value: Any, hint: type, where: str, limit: float | None) -> float | int:
    """A JSON/TOML number as ``hint`` (float or int), within ``limit`` when one is given."""
    whole = hint is int
    want = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, value, want)
    try:
        x = float(value)
    except OverflowError:  # an int beyond any float
        raise _fail(where, value, f"{want} (at most {limit:g} in size)" if limit else want) from None
    if limit is not None and (not math.isfinite(x) or abs(x) > limit):
        raise _fail(where, value, f"a finite {want[2:]} (at most {limit:g} in size)")
    if not whole:
        return x
    if isinstance(value, int):
        return value
    if not (math.isfinite(x) and x.is_integer()):
        raise _fail(where, value, want)
    return int(x)


class Record:
    """Mixin for frozen result dataclasses: ``to_dict`` / ``from_dict`` with one schema.

    ``KIND`` names the record in tagged JSON lines (``"kind"``); ``None`` for records that
    only travel inside others.
    """

    KIND: ClassVar[str | None] = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def to_json(self) -> dict[str, Any]:
        """The JSON-safe, tagged form (``kind``/``schema`` first when the class has a KIND)."""
        body = json_safe(self.to_dict())
        return tagged(self.KIND, body) if self.KIND else body

    @classmethod
    def from_dict(cls: type[R], d: Mapping[str, Any]) -> R:
        """Rebuild from :meth:`to_dict` output (or a decoded JSON line); see the module doc."""
        name = cls.__name__
        if not isinstance(d, Mapping):
            raise ValueError(f"{name}: expected a JSON object, got {type(d).__name__}")
        kind = d.get("kind")
        if cls.KIND is not None and isinstance(kind, str) and "schema" in d and kind != cls.KIND:
            raise ValueError(f"{name}: this is a {kind!r} record, not a {cls.KIND!r}")
        schema = d.get("schema")
        if isinstance(schema, int) and not isinstance(schema, bool) and "kind" in d and schema > SCHEMA_VERSION:
            raise ValueError(f"{name}: written with schema {schema}, this focuswatch reads up to {SCHEMA_VERSION}; "
                             "upgrade focuswatch")
        hints = typing.get_type_hints(cls)
        kw = {}
        missing = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if not f.init:
                continue
            if f.name in d:
                kw[f.name] = revive(d[f.name], hints.get(f.name, Any), f"{name}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
                missing.append(f.name)
        if missing:
            raise ValueError(f"{name}: missing field(s) {', '.join(missing)}")
        return cls(**kw)


# --------------------------------------------------------------------------- time at the edges

_FRACTION = re.compile(r"\d\d:\d\d:\d\d\.(\d+)")


def parse_iso(text: str | None, *, naive_is_local: bool = False) -> datetime | None:
    """Parse an ISO 8601 time (``Z`` suffix accepted); ``None``/garbage -> ``None``.

    A naive time means UTC (FITS DATE-OBS), or with ``naive_is_local`` this machine's local
    time (NINA writes ``DateTime.Now`` without an offset in its reports and events).

    Any number of fractional-second digits is accepted (FITS writers use 1 to 7; Python
    3.10's ``fromisoformat`` takes only 3 or 6), so this also reads DATE-OBS values.
    """
    if not text or not isinstance(text, str):
        return None
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    frac = _FRACTION.search(t)
    if frac:
        t = f"{t[:frac.start(1)]}{frac.group(1)[:6].ljust(6, '0')}{t[frac.end(1):]}"
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.astimezone() if naive_is_local else dt.replace(tzinfo=timezone.utc)
    return dt
