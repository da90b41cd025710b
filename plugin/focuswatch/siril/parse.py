"""Reading what Siril prints and writes: ``stat``, ``bgnoise``, registration matrices, ``.seq`` files,
``findstar`` lists (pure text parsing)."""
from __future__ import annotations


import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

from focuswatch.model.records import Record


# --------------------------------------------------------------------------- log parsing

@dataclass(frozen=True)
class ImageStat(Record):
    """Siril's ``stat`` line, in Siril's units (16-bit ADU for integer and 0..1 float images).

    ``avg_dev`` is printed by Siril 1.0 only; ``bgnoise`` by Siril 1.2+ only (``None`` when
    the version does not print it).
    """

    mean: float
    median: float
    sigma: float
    avg_dev: float | None
    min: float
    max: float
    bgnoise: float | None = None


_STAT_PAIR = re.compile(r"([A-Za-z]+):\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf)",
                        re.IGNORECASE)


def parse_stat(lines: Sequence[str]) -> ImageStat | None:
    """Parse Siril's ``stat`` line by key name, whatever the version's order and extras.

    1.0.6: ``B&W layer: Mean: 508.7, Median: 500.1, Sigma: 109.6, AvgDev: 12.7, Min: .., Max: ..``;
    1.2+: ``... Sigma: 109.6, Min: .., Max: .., bgnoise: 4.62`` (no AvgDev). Mean, Median,
    Sigma, Min and Max are required; AvgDev and bgnoise are optional.
    """
    for line in lines:
        pairs = {k.lower(): float(v) for k, v in _STAT_PAIR.findall(line)}
        if all(k in pairs for k in ("mean", "median", "sigma", "min", "max")):
            return ImageStat(pairs["mean"], pairs["median"], pairs["sigma"], pairs.get("avgdev"),
                             pairs["min"], pairs["max"], pairs.get("bgnoise"))
    return None


def parse_bgnoise(lines: Sequence[str]) -> float | None:
    """Background noise from ``Background noise value (channel: #0): 4.620 (7.049e-05)``.

    The first number is on the 16-bit ADU scale whatever the image's bit depth.
    """
    for line in reversed(list(lines)):
        m = re.search(r"Background noise value \(channel: #\d+\):\s*([-\d.eE+]+)", line)
        if m:
            return float(m.group(1))
    st = parse_stat(lines)  # Siril 1.2+ also prints it on the stat line
    return st.bgnoise if st is not None else None


_MATRIX_ROW = re.compile(r"^\s*([-+]?\d+\.\d+(?:e[-+]?\d+)?)\s+([-+]?\d+\.\d+(?:e[-+]?\d+)?)\s+"
                         r"([-+]?\d+\.\d+(?:e[-+]?\d+)?)\s*$")
_MATCHED_IMAGE = re.compile(r"Matching stars in image (\d+): done")
_LOGGED_SHIFT = re.compile(r"^d([xy]):\s*([-+]?\d+(?:\.\d+)?)\s*px")
#: Siril prints the matrix with 5 decimals and the shift (dx = -c, dy = -f) with 2: they agree to
#: 0.005 px plus the matrix's own rounding.
_SHIFT_AGREES_PX = 0.0051
#: The third row of a registration matrix: (h20, h21, h22) = (~0, ~0, 1) (an affine or a nearly
#: affine homography, normalised); a row of another matrix there means rows were mixed up.
_PERSPECTIVE_MAX = 0.01
#: Siril normalises the homography so that h22 = 1 and prints it as ``1.00000``; anything further off
#: is not a third row.
_H22_TOLERANCE = 1e-3


def parse_transforms_by_image(lines: Sequence[str]) -> dict[int, tuple[float, ...]]:
    """The registration matrices Siril's ``register`` prints, keyed by the image number Siril
    gives them (``light_00007.fits`` is 7), as ``(a, b, c, d, e, f)`` of ``x' = a x + b y + c``,
    ``y' = d x + e y + f``.

    Siril 1.0.6 registers on several threads and prints each matrix as four separate lines
    (``Transformation Matrix:`` and three rows, with no image number), then the image's
    ``Matching stars in image N: done`` and its ``dx: ... px`` / ``dy: ... px``. Another thread's
    lines can fall between them (seen in real logs: two rows, 25 lines of the next image's
    matching, the third row). So a row goes to the latest matrix still missing rows (the thread
    that printed a header last is the one printing rows), and a whole matrix is given to the image
    whose logged shift is its own (``dx = -c``, ``dy = -f`` to Siril's rounding), not to whatever
    image comes next. A matrix that no image's shift confirms, or whose third row is not
    ``(0, 0, 1)``, is left out rather than mixed: fewer matrices than subs is the caller's case
    for random shifts. Without logged shifts (another Siril's wording), a matrix whose four lines
    are together and directly followed by an image's ``Matching stars`` line is that image's.
    """
    open_mats: list[list[Any]] = []          # [rows, contiguous, header line]
    done: list[tuple[int, bool, tuple[float, ...]]] = []   # (last line, contiguous, matrix)
    images: dict[int, dict[str, Any]] = {}
    waiting: list[int] = []                  # images whose dx / dy lines are still to come
    for i, line in enumerate(lines):
        if "Transformation Matrix" in line:
            open_mats.append([[], True, i])
            continue
        m = _MATRIX_ROW.match(line)
        if m and open_mats:
            entry = open_mats[-1]
            entry[1] = entry[1] and i == entry[2] + len(entry[0]) + 1
            entry[0].append(tuple(float(g) for g in m.groups()))
            if len(entry[0]) == 3:
                open_mats.pop()
                r0, r1, r2 = entry[0]
                if (abs(r2[0]) <= _PERSPECTIVE_MAX and abs(r2[1]) <= _PERSPECTIVE_MAX
                        and abs(r2[2] - 1.0) <= _H22_TOLERANCE):
                    done.append((i, entry[1], r0 + r1))
            continue
        m = _MATCHED_IMAGE.search(line)
        if m:
            n = int(m.group(1))
            images[n] = {"line": i}
            waiting.append(n)
            continue
        m = _LOGGED_SHIFT.match(line)
        if m and waiting:
            img = images[waiting[-1]]
            img[m.group(1)] = float(m.group(2))
            if "x" in img and "y" in img:
                waiting.pop()
    out: dict[int, tuple[float, ...]] = {}
    for end, contiguous, mat in done:
        after = sorted((img["line"], n) for n, img in images.items() if n not in out and img["line"] > end)
        for line_no, n in after:
            img = images[n]
            if "x" in img and "y" in img:
                if abs(img["x"] + mat[2]) <= _SHIFT_AGREES_PX and abs(img["y"] + mat[5]) <= _SHIFT_AGREES_PX:
                    out[n] = mat
                    break
            elif contiguous and line_no == end + 1:
                out[n] = mat
                break
    return out


def parse_transforms(lines: Sequence[str]) -> tuple[tuple[float, ...], ...]:
    """The matrices of :func:`parse_transforms_by_image`, in image order."""
    by_image = parse_transforms_by_image(lines)
    return tuple(by_image[n] for n in sorted(by_image))


@dataclass(frozen=True)
class SeqImage(Record):
    """One image of a ``.seq`` file with its registration data for layer 0."""

    index: int
    filenum: int
    included: bool
    fwhm_px: float | None = None
    weighted_fwhm_px: float | None = None
    roundness: float | None = None
    quality: float | None = None
    n_stars: int | None = None
    background: float | None = None


@dataclass(frozen=True)
class SeqFile(Record):
    """The parts of a Siril ``.seq`` file we use."""

    name: str
    version: int
    reference_index: int
    images: tuple[SeqImage, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "reference_index": self.reference_index,
                "images": [i.to_dict() for i in self.images]}


def _pos(v: float) -> float | None:
    return v if math.isfinite(v) and v > 0 else None


def parse_seq(text: str) -> SeqFile:
    """Parse a ``.seq`` file (formats v0-v3 of Siril 1.0 and v4+ of 1.1/1.2+).

    ``R`` lines: v3 (1.0.x) ``R0 shiftx shifty fwhm wfwhm roundness quality``; v4+
    ``R0 fwhm wfwhm roundness quality background n_stars H h00 ... h22``. A value of 0
    means "not measured" and becomes ``None``.
    """
    name, version, ref = "", 0, -1
    images: list[list[Any]] = []
    regs: list[dict[str, Any]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("S "):
            m = re.match(r"S\s+'([^']*)'\s+(.*)$", line) or re.match(r"S\s+(\S+)\s+(.*)$", line)
            if not m:
                raise ValueError(f"bad S line: {line}")
            name = m.group(1)
            nums = [int(x) for x in m.group(2).split()]
            ref = nums[4] if len(nums) > 4 else -1
            version = nums[5] if len(nums) > 5 else 0
        elif line.startswith("I "):
            parts = line.split()
            images.append([int(parts[1]), parts[2] != "0"])
        elif re.match(r"R0\s", line) or line.startswith("R* "):
            vals = line.split()[1:]
            if version >= 4:
                nums = [float(v) for v in vals[:6]]
                regs.append({"fwhm_px": _pos(nums[0]), "weighted_fwhm_px": _pos(nums[1]),
                             "roundness": _pos(nums[2]), "quality": nums[3] if len(nums) > 3 else None,
                             "background": nums[4] if len(nums) > 4 else None,
                             "n_stars": int(nums[5]) if len(nums) > 5 else None})
            elif version == 3:
                nums = [float(v) for v in vals[:6]]
                regs.append({"fwhm_px": _pos(nums[2]), "weighted_fwhm_px": _pos(nums[3]),
                             "roundness": _pos(nums[4]), "quality": nums[5]})
            elif version in (1, 2):
                nums = [float(v) for v in vals[:5]]
                regs.append({"fwhm_px": _pos(nums[2]), "roundness": _pos(nums[3]), "quality": nums[4]})
            else:
                nums = [float(v) for v in vals]
                regs.append({"fwhm_px": _pos(nums[5]) if len(nums) > 5 else None})
    out = []
    for i, (filenum, incl) in enumerate(images):
        reg = regs[i] if i < len(regs) else {}
        out.append(SeqImage(i, filenum, incl, **reg))
    return SeqFile(name, version, ref, tuple(out))


def parse_findstar_list(text: str) -> list[dict[str, float]]:
    """Rows of a ``findstar -out=`` star list (Siril 1.2+), keyed by the header's names.

    The header line starts with ``# star#``; columns differ between versions (1.3 adds
    ``beta``), so they are looked up by name: ``X``, ``Y``, ``FWHMx [px]``, ``FWHMy [px]``.
    """
    header: list[str] | None = None
    rows: list[dict[str, float]] = []
    for raw in text.splitlines():
        if raw.startswith("# star#") or raw.startswith("star#"):
            header = [h.strip() for h in raw.lstrip("# ").split("\t")]
            continue
        if raw.startswith("#") or not raw.strip() or header is None:
            continue
        parts = raw.split("\t")
        row: dict[str, float] = {}
        for key, val in zip(header, parts):
            try:
                row[key] = float(val)
            except ValueError:
                continue
        rows.append(row)
    return rows
