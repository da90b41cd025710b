"""What happened over a night, counted from its decisions: :func:`summarize` → :class:`Summary`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from focuswatch.model.numerics import finite_median as _median
from focuswatch.model.records import Record
from focuswatch.policy.records import Decision


@dataclass(frozen=True)
class Summary(Record):
    """What happened over a night (or would have, for ``replay``)."""

    n_frames: int
    n_ok: int
    n_refocus: int
    n_skip: int
    n_autofocus: int
    refocus_rules: Mapping[str, int]
    skip_reasons: Mapping[str, int]
    max_defocus_um: float | None
    max_defocus_cfz: float | None
    median_hfr_px: float | None


def summarize(decisions: Sequence[Decision], n_autofocus: int = 0) -> Summary:
    """Count decisions, rules and skip reasons; worst defocus seen on accepted frames."""
    rules: dict[str, int] = {}
    skips: dict[str, int] = {}
    for d in decisions:
        if d.decision == "refocus":
            for r in d.rules:
                rules[r] = rules.get(r, 0) + 1
        elif d.decision == "skip":
            for r in d.rules or ("other",):
                skips[r] = skips.get(r, 0) + 1
    kept = [d for d in decisions if d.decision != "skip"]
    dfs = [d.defocus_um for d in kept if d.defocus_um is not None]
    cfzs = [d.defocus_cfz for d in kept if d.defocus_cfz is not None]
    return Summary(len(decisions), sum(d.decision == "ok" for d in decisions),
                   sum(d.decision == "refocus" for d in decisions), sum(d.decision == "skip" for d in decisions),
                   n_autofocus, rules, skips, max(dfs) if dfs else None, max(cfzs) if cfzs else None,
                   _median([d.hfr_px for d in kept]))
