"""One TOML file for the rig and the policy, with FITS headers filling the gaps.

Sections: ``[rig]`` (the calculator's inputs), ``[policy]`` (refocus rules, read by
:mod:`focuswatch.policy`), ``[trigger]`` (how to ask for a refocus, read by
:mod:`focuswatch.triggers`), ``[watch]`` (folders, polling), ``[scale]`` (workers, Dask
scheduler; read by :mod:`focuswatch.scale.parallel`), ``[diagnose]`` and ``[grade]``
(thresholds of :class:`focuswatch.diagnose.DiagnoseConfig` and
:class:`focuswatch.grade.GradeConfig`), ``[stars]`` (how many stars get the full profile:
:class:`focuswatch.stars.StarsConfig`). Every section is turned into a
frozen dataclass by :func:`section_to_dataclass`, which rejects unknown keys and values of the
wrong type with a :class:`~focuswatch.errors.ConfigError` naming ``section.key``.

Example::

    [rig]
    aperture_mm = 200
    focal_length_mm = 1000
    pixel_um = 3.76
    obstruction = 0.33
    focuser_step_um = 2.5

    [policy]
    temperature_delta_c = 1.0
    max_interval_min = 90
    defocus_limit_cfz = 0.5
"""
from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from focuswatch.errors import ConfigError
from focuswatch.optics import Rig, rig_with_header  # noqa: F401  (re-exported: callers read it from here too)
from focuswatch.model.records import revive

T = TypeVar("T")

#: Range checks for rig values: (low, high), inclusive.
RIG_LIMITS: dict[str, tuple[float, float]] = {
    "aperture_mm": (5.0, 10000.0),
    "focal_length_mm": (10.0, 100000.0),
    "pixel_um": (0.5, 50.0),
    "binning": (1, 8),
    "obstruction": (0.0, 0.9),
    "wavelength_nm": (200.0, 2500.0),
    "seeing_arcsec": (0.1, 20.0),
    "seeing_tolerance_pct": (1.0, 15.0),
    "focuser_step_um": (0.001, 1000.0),
    "f_ratio": (0.5, 100.0),
}


#: No setting is a number beyond this (frames, minutes, steps, ports...): a bigger one is a typo
#: (``consecutive_frames = 99999999999999999999`` quietly switched a rule off).
MAX_MAGNITUDE = 1.0e9


def _toml_value(value: Any) -> str:
    """A setting's value for messages, with TOML's ``true``/``false`` (Python's ``True`` is
    not what the user typed); other values as Python shows them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def section_to_dataclass(cls: type[T], values: Mapping[str, Any] | None, section: str,
                         aliases: Mapping[str, str] | None = None) -> T:
    """Build the frozen config dataclass ``cls`` from a TOML table, validating every key.

    Unknown keys and wrong types raise :class:`ConfigError` naming ``section.key``; the types
    are read by :func:`focuswatch.model.records.revive` (the one reflector, shared with
    ``Record.from_dict``). Numbers must be finite and at most :data:`MAX_MAGNITUDE` in size; a field may state its own
    bounds as ``field(metadata={"range": (lo, hi)})``; the dataclass's own ``__post_init__``
    may add range checks the same way. ``aliases`` maps a field to the name the file uses
    (``f_ratio_given`` is written ``f_ratio``), for the list of known settings.
    """
    values = dict(values or {})
    shown = dict(aliases or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            known = ", ".join(sorted(shown.get(f, f) for f in fields))
            raise ConfigError(f"[{section}] {key}: unknown setting (known: {known})")
        try:  # the one type-hint reflector (records.revive), strict about numbers for settings
            coerced = revive(value, hints[key], f"[{section}] {key}", limit=MAX_MAGNITUDE)
        except ValueError:
            raise ConfigError(f"[{section}] {key} = {_toml_value(value)}: expected {_type_name(hints[key])}") from None
        bounds = fields[key].metadata.get("range") if fields[key].metadata else None
        if bounds is not None and isinstance(coerced, (int, float)) and not isinstance(coerced, bool):
            lo, hi = bounds
            if not lo <= coerced <= hi:
                raise ConfigError(f"[{section}] {key} = {_toml_value(value)}: must be between {lo:g} and {hi:g}")
        kwargs[key] = coerced
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{section}]: {exc}") from None


def _type_name(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if args:
        return " or ".join(_type_name(a) for a in args)
    return {float: f"a finite number (at most {MAX_MAGNITUDE:g} in size)",
            int: f"a whole number (at most {MAX_MAGNITUDE:g} in size)",
            bool: "true or false", str: "a string"}.get(
        annotation, str(annotation))


def rig_from_mapping(values: Mapping[str, Any] | None, section: str = "rig") -> Rig:
    """Validate a ``[rig]`` table and return a :class:`Rig`.

    ``f_ratio`` may stand in for ``focal_length_mm``/``aperture_mm``. Out-of-range values
    (negative aperture, obstruction >= 0.9 ...) raise :class:`ConfigError` naming the key.
    """
    values = dict(values or {})
    if "f_ratio" in values:
        values["f_ratio_given"] = values.pop("f_ratio")
    for key, value in values.items():
        name = "f_ratio" if key == "f_ratio_given" else key
        if name in RIG_LIMITS and value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"[{section}] {name} = {_toml_value(value)}: expected a number")
            lo, hi = RIG_LIMITS[name]
            if not lo <= value <= hi:
                raise ConfigError(f"[{section}] {name} = {_toml_value(value)}: must be between {lo:g} and {hi:g}")
    return section_to_dataclass(Rig, values, section, aliases={"f_ratio_given": "f_ratio"})


@dataclass(frozen=True)
class Config:
    """The whole configuration file, one table per concern (kept as plain dicts here).

    Each consumer turns its table into its own frozen dataclass with
    :func:`section_to_dataclass`, so the policy's thresholds live with the policy.
    """

    rig: Rig = field(default_factory=Rig)
    policy: Mapping[str, Any] = field(default_factory=dict)
    trigger: Mapping[str, Any] = field(default_factory=dict)
    watch: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None
    scale: Mapping[str, Any] = field(default_factory=dict)
    rig_table: Mapping[str, Any] = field(default_factory=dict)
    diagnose: Mapping[str, Any] = field(default_factory=dict)
    grade: Mapping[str, Any] = field(default_factory=dict)
    stars: Mapping[str, Any] = field(default_factory=dict)
    #: the tables already turned into their dataclasses (the watcher asks for them on every
    #: frame; the tables never change after loading)
    _built: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def _section(self, name: str, cls: Any) -> Any:
        if name not in self._built:
            self._built[name] = section_to_dataclass(cls, getattr(self, name), name)
        return self._built[name]

    def diagnose_config(self) -> Any:
        """The ``[diagnose]`` table as a :class:`focuswatch.diagnose.DiagnoseConfig` (validated at load)."""
        from focuswatch.diagnose import DiagnoseConfig

        return self._section("diagnose", DiagnoseConfig)

    def grade_config(self) -> Any:
        """The ``[grade]`` table as a :class:`focuswatch.grade.GradeConfig` (validated at load)."""
        from focuswatch.grade import GradeConfig

        return self._section("grade", GradeConfig)

    def stars_config(self) -> Any:
        """The ``[stars]`` table as a :class:`focuswatch.stars.StarsConfig` (validated at load)."""
        from focuswatch.stars import StarsConfig

        return self._section("stars", StarsConfig)


KNOWN_SECTIONS = ("rig", "policy", "trigger", "watch", "scale", "diagnose", "grade", "stars")

#: The dataclass (``"module:Class"``, imported only when the file has that section) that
#: validates each section when the file is loaded, so a bad value is one line naming the
#: file and ``[section] key`` before anything runs. A class with a ``from_mapping``
#: classmethod is built through it (``[trigger]`` checks its command list there).
SECTION_TYPES: dict[str, str] = {
    "policy": "focuswatch.policy:PolicyConfig",
    "trigger": "focuswatch.triggers:TriggerConfig",
    "watch": "focuswatch.watch:WatchConfig",
}


def validate_section(name: str, values: Mapping[str, Any] | None, source: str | Path | None = None) -> Any:
    """Validate one section with its dataclass (:data:`SECTION_TYPES`); errors name ``source``."""
    import importlib

    module, _, cls_name = SECTION_TYPES[name].partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    try:
        if hasattr(cls, "from_mapping"):
            return cls.from_mapping(values or {}, name)
        return section_to_dataclass(cls, values, name)
    except ConfigError as exc:
        if source is None or str(exc).startswith(str(source)):
            raise
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: str | Path | None) -> Config:
    """Read the TOML file at ``path`` (``None``: an empty configuration).

    A missing file, bad TOML, an unknown section or a bad ``[rig]`` value raises
    :class:`ConfigError` with the file name and the setting.
    """
    if path is None:
        return Config()
    p = Path(path)
    try:
        # utf-8-sig: Notepad and PowerShell save TOML with a byte-order mark
        raw = tomllib.loads(p.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: configuration file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the configuration file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from None
    unknown = [k for k in raw if k not in KNOWN_SECTIONS]
    if unknown:
        raise ConfigError(f"{p}: unknown section [{unknown[0]}] (known: {', '.join(KNOWN_SECTIONS)})")
    for name in KNOWN_SECTIONS:
        if name in raw and not isinstance(raw[name], dict):
            raise ConfigError(f"{p}: '{name}' must be a table ([{name}])")
    try:
        rig = rig_from_mapping(raw.get("rig"))
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    for name in SECTION_TYPES:
        if name in raw:
            validate_section(name, raw[name], p)
    cfg = Config(rig=rig, policy=dict(raw.get("policy", {})), trigger=dict(raw.get("trigger", {})),
                 watch=dict(raw.get("watch", {})), path=p,
                 rig_table=dict(raw.get("rig", {})), scale=dict(raw.get("scale", {})),
                 diagnose=dict(raw.get("diagnose", {})), grade=dict(raw.get("grade", {})),
                 stars=dict(raw.get("stars", {})))
    try:  # thresholds of the diagnosis and the grade, [stars]: checked now, one line naming the setting
        cfg.diagnose_config()
        cfg.grade_config()
        cfg.stars_config()
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    return cfg
