"""Application Auto Scaling cron expressions, read the way AWS reads them.

`cron(minutes hours day-of-month month day-of-week year)`: the fields, ranges and wildcards of the
Application Auto Scaling / EventBridge cron format. Day-of-month and day-of-week cannot both be given:
exactly one of them is `?`. `problem()` says what is wrong with an expression; `may_coincide()` tells
whether two expressions can fire in the same minute.
"""

import re
from dataclasses import dataclass

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")  # 1-7 in AWS cron
EXPRESSION = re.compile(r"^cron\((.*)\)$")


@dataclass(frozen=True)
class Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # accepted instead of numbers (low upwards)
    wildcards: str = ""  # besides , - * /


FIELDS = (
    Field("minutes", 0, 59),
    Field("hours", 0, 23),
    Field("day-of-month", 1, 31, wildcards="?LW"),
    Field("month", 1, 12, MONTHS),
    Field("day-of-week", 1, 7, WEEKDAYS, wildcards="?L#"),
    Field("year", 1970, 2199),
)


class CronError(ValueError):
    pass


def _number(field: Field, text: str) -> int:
    upper = text.upper()
    if upper in field.names:
        return field.low + field.names.index(upper)
    if not text.isdigit():
        names = f" or {field.names[0]}-{field.names[-1]}" if field.names else ""
        raise CronError(f"{field.name} '{text}' is not a number from {field.low} to {field.high}{names}")
    value = int(text)
    if not field.low <= value <= field.high:
        raise CronError(f"{field.name} {value} is outside {field.low}-{field.high}")
    return value


def _span(field: Field, low: int, high: int) -> set[int]:
    if low <= high:
        return set(range(low, high + 1))
    return set(range(low, field.high + 1)) | set(range(field.low, high + 1))  # wraps, e.g. FRI-MON


def _special(field: Field, item: str) -> set[int] | None:
    """The days L, W and # can fall on; None when the item is none of them."""
    if field.name == "day-of-month":
        if item == "L":
            return set(range(28, 32))
        if item.endswith("W") and item[:-1].isdigit():
            day = _number(field, item[:-1])
            return set(range(max(1, day - 2), min(31, day + 2) + 1))
    if field.name == "day-of-week":
        if item == "L":
            return {7}
        if item.endswith("L") and len(item) > 1:
            return {_number(field, item[:-1])}
        if "#" in item:
            weekday, _, nth = item.partition("#")
            if not nth.isdigit() or not 1 <= int(nth) <= 5:
                raise CronError(f"day-of-week '{item}': the number after # is the week of the month, 1 to 5")
            return {_number(field, weekday)}
    return None


def _item(field: Field, item: str) -> set[int]:
    """The values one comma-separated item matches (L, W and # as the days they can fall on)."""
    special = _special(field, item)
    if special is not None:
        return special
    base, slash, step = item.partition("/")
    if slash and (not step.isdigit() or int(step) == 0):
        raise CronError(f"{field.name} '{item}': the step after / must be a whole number above 0")
    if base == "*":
        low, high = field.low, field.high
    elif "-" in base:
        first, _, last = base.partition("-")
        low, high = _number(field, first), _number(field, last)
    else:
        low = _number(field, base)
        high = field.high if slash else low
    values = sorted(_span(field, low, high))
    return set(values[::int(step)]) if slash else set(values)


def _field(field: Field, text: str) -> set[int] | None:
    """The values a field matches; None for `?`."""
    if text == "?":
        if "?" not in field.wildcards:
            raise CronError(f"{field.name} cannot be '?' (only day-of-month or day-of-week can)")
        return None
    allowed = set("0123456789,-*/") | set(field.wildcards) | set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
    if not text or set(text) - allowed:
        raise CronError(f"{field.name} '{text}' uses characters its field does not take")
    values: set[int] = set()
    for item in text.split(","):
        values |= _item(field, item)
    return values


def parse(expression: str) -> list[set[int] | None]:
    """The values each of the six fields matches; CronError says what AWS would refuse."""
    match = EXPRESSION.match(expression)
    if not match:
        raise CronError("is not cron(...)")
    parts = match.group(1).split()
    if len(parts) != len(FIELDS):
        raise CronError(f"has {len(parts)} fields, AWS cron has 6 (minutes hours day-of-month month day-of-week "
                        "year)")
    fields = [_field(field, part) for field, part in zip(FIELDS, parts, strict=True)]
    if (fields[2] is None) == (fields[4] is None):
        raise CronError("needs exactly one of day-of-month and day-of-week to be '?' (e.g. cron(0 7 ? * MON-FRI *) "
                        "or cron(0 7 1 * ? *))")
    return fields


def problem(expression: str) -> str | None:
    try:
        parse(expression)
    except CronError as error:
        return str(error)
    return None


def may_coincide(first: str, second: str) -> bool:
    """Whether both expressions can fire in the same minute (a day-of-month and a day-of-week day can)."""
    a, b = parse(first), parse(second)
    for index in (0, 1, 3, 5):  # minutes, hours, month, year
        if not a[index] & b[index]:  # type: ignore[operator]
            return False
    # The same kind of day on both sides must share one; a day-of-month and a weekday can always meet.
    return all(a[i] is None or b[i] is None or bool(a[i] & b[i]) for i in (2, 4))  # type: ignore[operator]
