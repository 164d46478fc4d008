"""Units and measurements written one way: ``6 inch`` = ``6 in.`` = ``6"`` = ``6in`` → ``6in``.

Shops spell a measurement many ways (``60w``, ``60 watt``, ``60-Watt``, ``60 watts``); a search
engine that splits them into a number and a word matches ``60`` and ``watt`` anywhere in a
product and misses the forms it was not given. :func:`normalize_units` rewrites a number
followed by a unit (:data:`UNITS`: length, area, volume, weight, power, voltage, current, data,
frequency ...) into one token, the number glued to the unit's canonical name, so that every
spelling of a measurement becomes the same word for the index and for the query.

Rules:

* the number stands alone (not glued to letters: ``ps4``, ``w32`` and ``12x18`` stay as they
  are) and is written with digits: ``6``, ``1,000``, ``1.5``, ``3/4`` (``1-1/2`` keeps its
  whole part as a word before it). Inside the token a decimal point becomes ``p`` and a fraction
  bar ``f`` (``1.5 gal`` → ``1p5gal``, ``3/4 in`` → ``3f4in``) so the tokenizer keeps it whole;
  trailing decimal zeros are dropped (``6.0 in`` = ``6 in``) and thousands commas removed;
* the unit follows the number directly, after spaces or one hyphen, and ends the word: ``6in``,
  ``6 in.``, ``6-inch``, ``6"``; ``'`` and ``"`` (and their typographic forms) are feet and
  inches;
* ``in`` followed by a number that ends a word is the word "in", not inches (``2 in 1``,
  ``2-in-1``; but ``13 in 2-in-1 laptop`` is 13 inches), and ``a``
  (amperes) counts only glued to its number (``15a``; ``15 a`` is left alone);
* with ``keep_number`` (documents) the bare number stays in front of the token (``6 in.`` →
  ``6 6in``), so a product still matches a query that gives only the number; queries leave it
  out (``6 inch`` → ``6in``), so they do not match every product that has a 6 somewhere.

Everything else is left as it was (case included), so the text can go on to any analyzer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: Canonical unit → the ways it is written after a number (matched case-insensitively).
UNITS: Mapping[str, tuple[str, ...]] = {
    # length
    "in": ("in", "in.", "inch", "inch.", "inches", '"', "''", "\u201d", "\u2033"),
    "ft": ("ft", "ft.", "foot", "feet", "'", "\u2019", "\u2032"),
    "yd": ("yd", "yd.", "yds", "yard", "yards"),
    "mm": ("mm", "millimeter", "millimeters", "millimetre", "millimetres"),
    "cm": ("cm", "centimeter", "centimeters", "centimetre", "centimetres"),
    "m": ("m", "meter", "meters", "metre", "metres"),
    "km": ("km", "kilometer", "kilometers", "kilometre", "kilometres"),
    # area and volume
    "sqft": ("sq ft", "sq. ft.", "sq.ft.", "sq ft.", "sqft", "square foot", "square feet"),
    "cuft": ("cu ft", "cu. ft.", "cu.ft.", "cu ft.", "cuft", "cubic foot", "cubic feet"),
    "gal": ("gal", "gal.", "gallon", "gallons"),
    "qt": ("qt", "qt.", "quart", "quarts"),
    "oz": ("oz", "oz.", "ounce", "ounces", "fl oz", "fl. oz.", "fl.oz.", "fl oz.", "fluid ounces"),
    "ml": ("ml", "milliliter", "milliliters", "millilitre", "millilitres"),
    "l": ("l", "ltr", "liter", "liters", "litre", "litres"),
    # weight
    "lb": ("lb", "lb.", "lbs", "lbs.", "pound", "pounds"),
    "kg": ("kg", "kgs", "kilogram", "kilograms"),
    "g": ("g", "gram", "grams"),
    "mg": ("mg", "milligram", "milligrams"),
    # power and electricity
    "w": ("w", "watt", "watts"),
    "kw": ("kw", "kilowatt", "kilowatts"),
    "v": ("v", "volt", "volts"),
    "amp": ("a", "amp", "amps", "ampere", "amperes"),
    "mah": ("mah",),
    "btu": ("btu", "btus"),
    "hp": ("hp", "horsepower"),
    "lm": ("lm", "lumen", "lumens"),
    # flow and pressure
    "cfm": ("cfm",),
    "gpm": ("gpm",),
    "psi": ("psi",),
    # data and frequency
    "mb": ("mb", "megabyte", "megabytes"),
    "gb": ("gb", "gigabyte", "gigabytes"),
    "tb": ("tb", "terabyte", "terabytes"),
    "hz": ("hz", "hertz"),
    "mhz": ("mhz", "megahertz"),
    "ghz": ("ghz", "gigahertz"),
}
#: Spellings that are a unit only glued to their number (``15a``, not ``15 a``).
GLUED_ONLY = frozenset({"a"})

_CANONICAL = {spelling: unit for unit, spellings in UNITS.items() for spelling in spellings}
_SPELLINGS = "|".join(re.escape(s) for s in sorted(_CANONICAL, key=len, reverse=True))
_NUMBER = r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?(?:/[0-9]+)?"
_MEASURE = re.compile(
    rf"(?<![\w.,/])(?P<number>{_NUMBER})(?P<gap>\s*-?\s*)(?P<unit>{_SPELLINGS})(?![^\W_])",
    re.IGNORECASE,
)
_DIGIT = re.compile(r"[0-9]")
_NUMBER_NEXT = re.compile(r"[\s-]*[0-9]+(?![\w./-])")


def normalize_units(text: str, keep_number: bool = False) -> str:
    """``text`` with every measurement written as one token (see the module docstring).

    Args:
        text: any text (a query, a title, a description).
        keep_number: also keep the bare number before each token (for documents).

    Returns:
        The text, measurements rewritten, everything else unchanged.

    Example:
        >>> normalize_units('6" wood screw, 60 Watts')
        ' 6in  wood screw,  60w '
        >>> normalize_units("6 in. wood screw", keep_number=True)
        ' 6 6in  wood screw'
    """
    if _DIGIT.search(text) is None:
        return text

    def rewrite(match: re.Match[str]) -> str:
        spelling = match["unit"].lower()
        if spelling in GLUED_ONLY and match["gap"]:
            return match[0]
        if spelling == "in" and _NUMBER_NEXT.match(text, match.end()):
            return match[0]  # "2 in 1", "2-in-1": the word, not inches
        number = match["number"]
        token = f"{_number_token(number)}{_CANONICAL[spelling]}"
        return f" {number} {token} " if keep_number else f" {token} "

    return _MEASURE.sub(rewrite, text)


def _number_token(number: str) -> str:
    """``1,000`` → ``1000``, ``1.50`` → ``1p5``, ``6.0`` → ``6``, ``3/4`` → ``3f4``."""
    value = number.replace(",", "")
    whole, point, rest = value.partition(".")
    if point:
        fraction, slash, denominator = rest.partition("/")
        fraction = fraction.rstrip("0")
        value = whole + (f"p{fraction}" if fraction else "") + slash + denominator
    return value.replace("/", "f")


__all__ = ["GLUED_ONLY", "UNITS", "normalize_units"]
