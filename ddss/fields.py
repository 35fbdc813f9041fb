"""Config values checked at the boundary: each field of an experiment's config has a type and a range,
and a value outside them stops the run before any work, with one line naming the field and the fix.

    fields.check("train", self, steps=fields.INT_POS, learning_rate=fields.POSITIVE, ...)

raises, e.g., `config.train.steps must be an integer ≥ 1, got 0.`
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import numbers


@dataclasses.dataclass(frozen=True)
class Rule:
    """A type (`int`, `float`, `bool`, `str`) and optional bounds; `open_low` excludes the lower bound."""

    kind: type
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    optional: bool = False  # None is accepted too (it means "not set": the documented default behaviour)

    def describe(self) -> str:
        noun = {int: "an integer", float: "a finite number", bool: "True or False", str: "a string"}[self.kind]
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.open_low else '≥'} {self.low:g}")
        if self.high is not None:
            bounds.append(f"≤ {self.high:g}")
        return ("None or " if self.optional else "") + noun + (" " + " and ".join(bounds) if bounds else "")

    def accepts(self, value) -> bool:
        if value is None:
            return self.optional
        if self.kind is bool:
            return isinstance(value, bool)
        if self.kind is str:
            return isinstance(value, str)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.kind is int and (not isinstance(value, numbers.Integral)):
            return False
        if not math.isfinite(float(value)):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or value <= self.high


INT_POS = Rule(int, 1)  # ≥ 1
INT_NONNEG = Rule(int, 0)  # ≥ 0
POSITIVE = Rule(float, 0, open_low=True)  # > 0, finite
NONNEG = Rule(float, 0)  # ≥ 0, finite
PROBABILITY = Rule(float, 0, 1)  # in [0, 1]
BOOL = Rule(bool)
STR = Rule(str)
OPT_STR = Rule(str, optional=True)  # a path or name; None: not set
OPT_INT_POS = Rule(int, 1, optional=True)  # a count; None: automatic or all


def unset_empty(c: dict, *names: str) -> None:
    """Config strings that are empty mean "not set": stored as None (`--config.checkpoint=` gives "")."""
    for name in names:
        if c.get(name) == "":
            c[name] = None


def check(section: str, obj, **rules: Rule) -> None:
    """Checks each named field of dataclass `obj` against its rule; `section` is its place in the config
    ("" for the top level, "train" for config.train)."""
    for name, rule in rules.items():
        value = getattr(obj, name)
        if not rule.accepts(value):
            where = f"config.{section}.{name}" if section else f"config.{name}"
            raise ValueError(f"{where} must be {rule.describe()}, got {value!r}.")


def check_each(section: str, name: str, values, rule: Rule, *, unique: bool = False) -> None:
    """Checks every item of a tuple field; `unique`: refuses repeats (which would give duplicate rows)."""
    where = f"config.{section}.{name}" if section else f"config.{name}"
    for value in values:
        if not rule.accepts(value):
            raise ValueError(f"every item of {where} must be {rule.describe()}, got {value!r} in {tuple(values)!r}.")
    if unique and len(set(values)) != len(tuple(values)):
        repeated = sorted({v for v in values if tuple(values).count(v) > 1})
        raise ValueError(f"{where} lists {', '.join(map(str, repeated))} more than once: each value gives one row; "
                         "drop the repeats.")


def check_known(section: str, values: dict, known) -> None:
    """Refuses fields the experiment does not read (a typo would otherwise be ignored or crash later)."""
    unknown = sorted(set(values) - set(known))
    if unknown:
        name = unknown[0]
        where = f"config.{section}.{name}" if section else f"config.{name}"
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f" Did you mean {close[0]}?" if close else f" It reads: {', '.join(sorted(known))}."
        raise ValueError(f"{where} is not a field this experiment reads.{hint}")


def construct(cls, section: str, values: dict):
    """`cls(**values)` for a config dataclass, refusing unknown fields by name first."""
    check_known(section, values, [f.name for f in dataclasses.fields(cls)])
    return cls(**values)
