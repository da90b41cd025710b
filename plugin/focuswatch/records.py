"""One serialisation for every result: ``to_dict()`` for ``--json``, the journal and replay,
``from_dict()`` to read them back.

Results are frozen dataclasses; they inherit :class:`Record` instead of each writing the
same two methods. ``from_dict`` ignores keys it does not know (so older or newer JSON still
loads) and rebuilds nested records, tuples of records and optional records from the type
hints, so a saved night can be re-rendered without re-measuring.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class P(Record):
...     x_px: float
...     tags: tuple[str, ...] = ()
>>> P.from_dict({"x_px": 1.5, "tags": ["a"], "unknown": 0})
P(x_px=1.5, tags=('a',))
"""
from __future__ import annotations

import dataclasses
import sys
import types
import typing
from typing import Any, Mapping, TypeVar

R = TypeVar("R", bound="Record")


def _revive(value: Any, hint: Any) -> Any:
    """Turn plain JSON values back into what the annotation ``hint`` says."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or (sys.version_info >= (3, 10) and origin is types.UnionType):
        for a in args:
            if a is type(None):
                continue
            if isinstance(a, type) and dataclasses.is_dataclass(a) and isinstance(value, Mapping):
                return _revive(value, a)
        real = [a for a in args if a is not type(None)]
        return _revive(value, real[0]) if len(real) == 1 else value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return hint.from_dict(value) if hasattr(hint, "from_dict") else hint(**value)
    if origin is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_revive(v, args[0]) for v in value)
        if args and len(args) == len(value):
            return tuple(_revive(v, a) for v, a in zip(value, args))
        return tuple(value)
    if origin is list and isinstance(value, (list, tuple)):
        return [_revive(v, args[0]) if args else v for v in value]
    return value


class Record:
    """Mixin for frozen result dataclasses: ``to_dict`` / ``from_dict`` with one schema."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[R], d: Mapping[str, Any]) -> R:
        hints = typing.get_type_hints(cls)
        kw = {f.name: _revive(d[f.name], hints.get(f.name, Any))
              for f in dataclasses.fields(cls) if f.name in d}  # type: ignore[arg-type]
        return cls(**kw)
