"""The diagnosis labels, what usually causes each, and what to do about it.

:class:`Label` is the one set of verdicts; the refocus policy derives its veto sets from
:data:`OPTICAL_LABELS` and :data:`TRANSIENT_LABELS` instead of keeping strings of its own.
:data:`CAUSES` and :data:`ADVICE` are the text a :class:`~focuswatch.diagnose.verdict.Diagnosis`
carries for its label (the night's verdict reuses :data:`ADVICE`).
"""
from __future__ import annotations

from enum import Enum


class Label(str, Enum):
    """The diagnosis labels. A ``str`` enum: JSON and comparisons see the plain string
    (member names equal their values, so hashing matches the strings too).

    ``frame`` emits every member but ``clouds``; ``clouds`` is a night label only
    (:func:`~focuswatch.diagnose.night`, from star counts and fluxes across frames).
    """

    in_focus = "in_focus"
    focus_miss = "focus_miss"
    poor_seeing = "poor_seeing"
    backfocus = "backfocus"
    tilt = "tilt"
    coma = "coma"
    collimation = "collimation"
    trailing = "trailing"
    dew = "dew"
    unknown = "unknown"
    clouds = "clouds"

    __hash__ = str.__hash__

    def __str__(self) -> str:
        return self.value


#: The verdicts :func:`~focuswatch.diagnose.frame` can give besides ``unknown``.
LABELS: tuple[str, ...] = tuple(lb.value for lb in Label if lb not in (Label.unknown, Label.clouds))
#: Every label :func:`~focuswatch.diagnose.frame` can emit (``unknown`` included).
FRAME_LABELS: frozenset[str] = frozenset(LABELS) | {Label.unknown.value}
UNKNOWN = Label.unknown.value
#: Labels an autofocus run can fix; everything else is a warning with advice.
REFOCUS_LABELS: frozenset[str] = frozenset({Label.focus_miss.value})
#: Problems of the optical train itself (stable over the night, not fixed by refocusing).
OPTICAL_LABELS: frozenset[str] = frozenset(lb.value for lb in (Label.backfocus, Label.tilt, Label.coma,
                                                                 Label.collimation))
#: Passing problems that make a frame's star sizes say nothing about focus (frame labels;
#: ``clouds`` is a night label, also listed so a night's verdict can be vetoed the same way).
TRANSIENT_LABELS: frozenset[str] = frozenset(lb.value for lb in (Label.trailing, Label.dew, Label.clouds))


# --------------------------------------------------------------------------- causes and advice
# Written in our own words from the seed's lists (shared/seeds/000_*).

CAUSES: dict[str, tuple[str, ...]] = {
    "in_focus": (),
    "focus_miss": (
        "the tube contracted as the night cooled (thermal drift) and nobody refocused",
        "focus was set before the tube had cooled down, or by eye without a mask or autofocus",
        "a filter change: filters are rarely exactly parfocal",
        "the drawtube slipped under the weight of the imaging train, or the focuser has play",
        "an autofocus step too coarse to find the true minimum",
    ),
    "poor_seeing": (
        "turbulent air: the star size changes from frame to frame, focus cannot fix it",
        "a low target seen through more air (high airmass)",
        "tube currents: the optics are warmer than the air",
    ),
    "backfocus": (
        "the distance from the field flattener or reducer to the sensor is not the specified one",
        "field curvature of the optics with no (or a wrong) flattener",
    ),
    "tilt": (
        "the sensor is not square to the optical axis (camera tilt, a loose adapter)",
        "the focuser or the drawtube sags under the weight of the imaging train",
    ),
    "coma": (
        "a Newtonian or fast reflector without a coma corrector, or a corrector at the wrong spacing",
    ),
    "collimation": (
        "the mirrors (or lens cells) are out of alignment: after transport, cooling or a knock",
    ),
    "trailing": (
        "wind shaking the mount or the tube",
        "guiding errors or no guiding, periodic error, a bad polar alignment",
        "vibration: a loose cable, a soft pier, someone walking nearby",
        "differential flexure between guide scope and imaging scope",
    ),
    "dew": (
        "dew or frost on the objective, the corrector or the filter/sensor window",
        "a dew heater off or too weak for the night's humidity",
    ),
}

ADVICE: dict[str, tuple[str, ...]] = {
    "in_focus": ("nothing to do: focus is within the critical focus zone",),
    "focus_miss": (
        "run an autofocus now (V-curve, 7-11 points, steps of about 30-50 um)",
        "add a temperature trigger (refocus every 0.5-1 C) and a time trigger (every 1-2 h)",
        "refocus at every filter change, or measure per-filter offsets once and apply them",
        "let the tube cool 30-60 min before the first focus; check the focuser for play and slip",
        "for the first focus use a Bahtinov mask",
    ),
    "poor_seeing": (
        "do not refocus: an autofocus run in bad seeing finds a worse position",
        "prefer targets high in the sky; shorten subs and reject the worst frames",
        "let the optics reach the air temperature",
    ),
    "backfocus": (
        "set the flattener/reducer-to-sensor distance to the manufacturer's value; adjust in small "
        "spacers and compare the corners",
        "an autofocus run will not help: it only moves the whole field",
    ),
    "tilt": (
        "check that the camera and adapters sit square and tight; use a tilt plate if it persists",
        "an autofocus run will not help: one side of the frame always stays soft",
    ),
    "coma": ("fit a coma corrector and set its spacing as specified",
             "an autofocus run will not help"),
    "collimation": ("collimate the telescope (star test or laser), then check again at the centre",
                    "an autofocus run will not help"),
    "trailing": (
        "check the guiding graph; recalibrate guiding and polar alignment",
        "shield the scope from the wind, shorten subs on windy nights, tighten cables and clamps",
        "do not refocus: the stars are smeared, not out of focus",
    ),
    "dew": ("switch on (or turn up) the dew heaters and fit a dew shield; check the optics",
            "frames taken since the onset are soft: reject them",
            "do not refocus: dew is not a focus problem"),
}


#: Where a seeing witness came from (``SeeingWitness.source``, ``evidence.witness_source``): a
#: seeing monitor's header value, or the night's own in-focus frames. Here, with the other names
#: the diagnosis reports, so the evidence can name them without importing the witness tracker.
MONITOR = "monitor"
INFOCUS = "infocus"
