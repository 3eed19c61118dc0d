"""The parameter model: declare a parameter once, get parsing, validation and schemas.

Every route and analysis lists its parameters as :class:`Param` objects grouped
in a :class:`Model`. From that one declaration come URL parsing and
validation (with 400 errors naming the parameter and what is allowed), the
JSON schemas in ``/api`` and ``/api/openapi.json``, the GUI's forms and the
canonical form used in cache keys.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dada.errors import BadParameter

Parser = Callable[[str], Any]

# ASCII only: Python's int() and float() also take "٣", "1_0" and other forms no URL should mean.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def ascii_int(raw: str) -> int:
    """An integer written in ASCII digits; ValueError otherwise."""
    if not _INTEGER.fullmatch(raw):
        raise ValueError(f"{raw!r} is not an integer")
    return int(raw)


def ascii_float(raw: str) -> float:
    """A finite decimal number in ASCII (no hex, no inf or nan); ValueError otherwise."""
    if not _NUMBER.fullmatch(raw):
        raise ValueError(f"{raw!r} is not a number")
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"{raw!r} is not a finite number")
    return value


@dataclass(frozen=True)
class Param:
    """One parameter: its name, JSON type, default, bounds and a one-line doc.

    ``parser`` turns the raw string into a value for types with their own
    syntax (ranges, pairs); it raises ``ValueError`` with a message on bad
    input. ``syntax`` then describes the accepted form for errors and schemas.
    """

    name: str
    doc: str
    type: str = "string"  # JSON schema type: integer, number, boolean, string
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] | None = None
    many: bool = False  # comma-separated list of choices
    unit: str | None = None
    parser: Parser | None = None
    syntax: str | None = None
    required: bool = False
    example: str | None = None
    presentation: bool = False  # only changes how an answer is shown: never enters what is computed
    names_file: bool = False  # the value is a file below the data root: access control checks it too

    def allowed(self) -> str:
        """Say in words what this parameter accepts (for 400 bodies and docs)."""
        if self.syntax:
            return self.syntax
        if self.choices:
            joined = ", ".join(self.choices)
            return f"comma-separated subset of {joined}" if self.many else f"one of {joined}"
        kind = {"integer": "an integer", "number": "a number", "boolean": "true or false"}.get(
            self.type, "a string"
        )
        lo, hi = self.minimum, self.maximum
        if lo is not None and hi is not None:
            left = "(" if self.exclusive_minimum else "["
            return f"{kind} in {left}{_fmt(lo)}, {_fmt(hi)}]"
        if lo is not None:
            return f"{kind} {'>' if self.exclusive_minimum else '>='} {_fmt(lo)}"
        if hi is not None:
            return f"{kind} <= {_fmt(hi)}"
        return kind

    def parse(self, raw: str) -> Any:
        """Turn the URL's string into a checked value, or raise BadParameter."""
        try:
            value = self._convert(raw.strip())
        except ValueError as exc:
            detail = str(exc) or f"cannot read {raw!r}"
            raise BadParameter(self.name, detail, self.allowed()) from None
        self._check_bounds(value)
        return value

    def _convert(self, raw: str) -> Any:
        if self.parser is not None:
            return self.parser(raw)
        if self.choices is not None:
            items = [s.strip() for s in raw.split(",")] if self.many else [raw]
            bad = [s for s in items if s not in self.choices]
            if bad or not items or (self.many and len(set(items)) != len(items)):
                raise ValueError(f"{raw!r} is not allowed")
            return tuple(items) if self.many else items[0]
        if self.type == "integer":
            return ascii_int(raw)
        if self.type == "number":
            return ascii_float(raw)
        if self.type == "boolean":
            low = raw.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{raw!r} is not a boolean")
        return raw

    def _check_bounds(self, value: Any) -> None:
        if self.type not in ("integer", "number") or self.parser is not None:
            return
        lo, hi = self.minimum, self.maximum
        too_low = lo is not None and (value <= lo if self.exclusive_minimum else value < lo)
        if too_low or (hi is not None and value > hi):
            raise BadParameter(self.name, f"{value} is out of range", self.allowed())

    def schema(self) -> dict[str, Any]:
        """JSON schema of the parameter as it appears in the URL."""
        s: dict[str, Any] = {"type": self.type, "description": self.doc}
        if self.choices is not None:
            if self.many:
                s = {"type": "string", "description": self.doc, "x-choices": list(self.choices)}
            else:
                s["enum"] = list(self.choices)
        if self.parser is not None:
            s = {"type": "string", "description": self.doc}
        if self.minimum is not None and self.parser is None:
            s["minimum"] = self.minimum
            if self.exclusive_minimum:
                s["exclusiveMinimum"] = True  # OpenAPI 3.0 style
        if self.maximum is not None and self.parser is None:
            s["maximum"] = self.maximum
        if self.default is not None:
            s["default"] = _jsonable(self.default)
        if self.unit:
            s["x-unit"] = self.unit
        if self.syntax:
            s["x-syntax"] = self.syntax
        if self.example is not None:
            s["example"] = self.example
        if self.presentation:
            s["x-presentation"] = True
        return s


@dataclass(frozen=True)
class Model:
    """An ordered set of parameters; parses a whole query at once."""

    params: tuple[Param, ...]
    by_name: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(names) != len(set(names)):
            raise ValueError(f"duplicate parameter names in {names}")
        object.__setattr__(self, "by_name", {p.name: p for p in self.params})

    @classmethod
    def of(cls, *groups: Iterable[Param]) -> Model:
        return cls(tuple(p for g in groups for p in g))

    def parse(self, query: Mapping[str, str], ignore: Iterable[str] = ()) -> dict[str, Any]:
        """Parse a query mapping; unknown names are a 400 listing the known ones, and so is a name given
        twice (a multi-dict's repeats: which one was meant cannot be guessed)."""
        skip = set(ignore)
        getall = getattr(query, "getall", None)
        if getall is not None:
            repeated = sorted({k for k in query if len(getall(k)) > 1})
            if repeated:
                raise BadParameter(repeated[0], "is given more than once", "each parameter once")
        unknown = sorted(k for k in query if k not in self.by_name and k not in skip)
        if unknown:
            known = ", ".join(p.name for p in self.params) or "none"
            raise BadParameter(unknown[0], "unknown parameter", f"parameters of this route: {known}")
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in query:
                out[p.name] = p.parse(query[p.name])
            elif p.required:
                raise BadParameter(p.name, "is required", p.allowed())
            else:
                out[p.name] = p.default
        return out

    def canonical(self, args: Mapping[str, Any], exclude: Iterable[str] = (), presentation: bool = True) -> str:
        """A stable text form of parsed arguments, for cache keys and ETags; ``presentation=False``
        leaves out what only changes how the answer is shown (the key of what is computed)."""
        skip = set(exclude)
        return "&".join(f"{p.name}={canon(args.get(p.name))}" for p in self.params
                        if p.name not in skip and (presentation or not p.presentation))

    def schemas(self) -> dict[str, dict[str, Any]]:
        return {p.name: p.schema() for p in self.params}


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return ",".join(map(str, v))
    return v


def canon(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, tuple):
        return ",".join(canon(x) for x in v)
    return str(v)
