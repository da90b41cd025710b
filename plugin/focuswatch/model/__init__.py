"""Frame data classes, header normalisation, the record schema (pure: no files, no clock).

:mod:`.frame` (:class:`FrameMeta`, :class:`Frame`, header and pixel normalisation),
:mod:`.records` (:class:`Record`, the one JSON-safe encoder, strict ``from_dict``, ISO times
at the edges) and :mod:`.numerics` (the one median helper). Import from the submodules inside
the package; the names below are for users of the package.
"""
from __future__ import annotations

from focuswatch.model.frame import (  # noqa: F401 - the package's face
    COLOUR_PLANES,
    Frame,
    FrameMeta,
    bayer_green_full,
    frame_from_array,
    meta_from_header,
    parse_date_obs,
)
from focuswatch.model.numerics import finite_median  # noqa: F401
from focuswatch.model.records import (  # noqa: F401
    KINDS,
    SCHEMA_VERSION,
    Record,
    dumps,
    json_safe,
    parse_iso,
    tagged,
)

__all__ = ["COLOUR_PLANES", "Frame", "FrameMeta", "bayer_green_full", "frame_from_array", "meta_from_header",
           "parse_date_obs", "finite_median", "KINDS", "SCHEMA_VERSION", "Record", "dumps", "json_safe", "parse_iso",
           "tagged"]
