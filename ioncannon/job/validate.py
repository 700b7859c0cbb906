"""The one check at the door: every field typed, in range and safe to put in a file name, one sentence each."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import types
import typing
import unicodedata
from collections.abc import Mapping
from typing import Any, Literal, Union

from ioncannon.job.errors import JobError

# A job's folder name: one path component that can never be "." or ".." or hidden (it starts with a letter or digit).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
WORD_MAX_CHARS = 40
# identifier and class meet in `{identifier} {class}_NNN.png` and `outputs/{identifier}_{keyword}`: with 4-byte
# UTF-8 letters 40 characters could still break the 255-byte file-name limit, so bytes are capped too
WORD_MAX_BYTES = 80
TEXT_MAX_CHARS = 1000


class SpecError(JobError):
    """A job (file, wizard answers or job.json) with problems; str() lists one sentence per problem."""

    def __init__(self, problems: list[str], where: str = "") -> None:
        self.problems = problems
        lead = f"{where}: " if where else ""
        if len(problems) == 1:
            super().__init__(lead + problems[0])
        else:
            super().__init__(f"{lead}{len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems))


# --------------------------------------------------------------------------- names that become files and folders


def name_problem(value: str, field: str = "name") -> str | None:
    """Why `value` can't be a job's folder name, or None."""
    if NAME_PATTERN.fullmatch(value):
        return None
    shown = _shown(value)
    return (f"{field} {shown} can't be a folder name: use 1-64 letters, digits, '.', '-' or '_', starting with a "
            "letter or digit (e.g. zwx-portraits).")


def word_problems(text: str, what: str) -> list[str]:
    """Why the identifier or class can't be used in the training file names and prompts (empty when it can)."""
    if not text.strip():
        hint = "type a short rare word such as 'zwx'" if what == "identifier" else \
            "pick man, woman, person, dog or cat, or type your own word"
        return [f"the {what} is empty: {hint}"]
    errors: list[str] = []
    if text != text.strip():
        errors.append(f"the {what} starts or ends with a space: remove it")
    if "/" in text or "\\" in text:
        errors.append(f"the {what} contains '/' or '\\', which would become a folder in the file name")
    if text.strip().startswith("."):
        errors.append(f"the {what} starts with '.', which would hide its files or leave their folder: "
                      "start it with a letter")
    if "_" in text:
        # The notebook's rule: the caption is the file name before the first '_'.
        errors.append(f"the {what} contains '_': the caption ends at the first '_', so training "
                      f"would see only '{text.split('_')[0]}'; drop the '_'")
    if any(unicodedata.category(c).startswith("C") for c in text):
        errors.append(f"the {what} contains control characters (a stray tab or newline?): retype it")
    if any(c in text for c in ':*?"<>|'):
        errors.append(f"the {what} contains one of : * ? \" < > |, which some file systems refuse")
    if len(text) > WORD_MAX_CHARS:
        errors.append(f"the {what} is {len(text)} characters long: keep it under {WORD_MAX_CHARS}")
    elif len(text.encode("utf-8", "surrogatepass")) > WORD_MAX_BYTES:
        errors.append(f"the {what} is too long for a file name in UTF-8: use fewer or plain a-z letters")
    return errors


def safe_component(value: str, what: str) -> str:
    """`value` if it is a single, visible path component; ValueError otherwise (a last guard for paths)."""
    if not value or value in (".", "..") or "/" in value or "\\" in value or "\0" in value or value.startswith("."):
        raise ValueError(f"{what} {value!r} is not a safe folder name")
    return value


# --------------------------------------------------------------------------- field types and ranges


@dataclasses.dataclass(frozen=True)
class Range:
    """Allowed values of a number field: [low, high], `above` makes low exclusive, `step` a required multiple."""

    low: float
    high: float
    above: bool = False
    step: int = 0
    usual: str = ""

    def problem(self, field: str, value: float) -> str | None:
        below = value <= self.low if self.above else value < self.low
        if not (below or value > self.high or (self.step and value % self.step)):
            return None
        whole = isinstance(value, int)
        lo, hi = (f"{self.low:g}", f"{self.high:g}") if not whole else (f"{int(self.low)}", f"{int(self.high)}")
        span = f"above {lo} and up to {hi}" if self.above else f"from {lo} to {hi}"
        kind = "a whole number" if whole else "a number"
        extra = f", a multiple of {self.step}" if self.step else ""
        usual = f" ({self.usual} is usual)" if self.usual else ""
        return f"{field} is {value!r}: write {kind} {span}{extra}{usual}."


def _type_text(hint: Any) -> str:
    """How a JSON/TOML value of this type is written, for the sentence."""
    origin = typing.get_origin(hint)
    if hint is bool:
        return "true or false"
    if hint is int:
        return "a whole number"
    if hint is float:
        return "a number"
    if hint is str:
        return "text in quotes"
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return " or ".join(_type_text(a) for a in inner) + " (or leave it out)"
    if origin in (list, tuple):
        return "a list of " + _type_text(typing.get_args(hint)[0]).replace("a whole number", "whole numbers")
    if origin is dict:
        return "a table of names to text"
    return str(hint)


def coerce(value: Any, hint: Any) -> tuple[bool, Any]:
    """(True, value in the field's own type) when `value` fits `hint`; (False, None) otherwise. Never raises."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True, value
    if hint is bool:
        return (True, value) if isinstance(value, bool) else (False, None)
    if hint is int:
        return (True, value) if isinstance(value, int) and not isinstance(value, bool) else (False, None)
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return True, float(value)
        return False, None
    if hint is str:
        return (True, value) if isinstance(value, str) else (False, None)
    if hint is type(None):
        return (True, None) if value is None else (False, None)
    if origin is Literal:
        return (True, value) if any(value == a and type(value) is type(a) for a in typing.get_args(hint)) \
            else (False, None)
    if origin in (Union, types.UnionType):
        for arm in typing.get_args(hint):
            ok, out = coerce(value, arm)
            if ok:
                return True, out
        return False, None
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, None
        arm = typing.get_args(hint)[0]
        items = [coerce(v, arm) for v in value]
        if not all(ok for ok, _ in items):
            return False, None
        out = [v for _, v in items]
        return True, tuple(out) if origin is tuple else out
    if origin is dict:
        key_t, val_t = typing.get_args(hint)
        if not isinstance(value, dict):
            return False, None
        pairs = [(coerce(k, key_t), coerce(v, val_t)) for k, v in value.items()]
        if not all(k[0] and v[0] for k, v in pairs):
            return False, None
        return True, {k[1]: v[1] for k, v in pairs}
    return False, None


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _example(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING and f.default is not None:
        return f" (e.g. {_shown(f.default)})"
    return ""


def typed_fields(cls: type, data: Any, prefix: str = "", strict_keys: bool = False,
                 skip: tuple[str, ...] = ()) -> tuple[dict[str, Any], list[str]]:
    """The fields of dataclass `cls` found in `data`, each checked against its type hint: (values, problems).

    Unknown keys are ignored (a newer version may write more) unless `strict_keys`, where a near miss is named.
    """
    where = prefix.rstrip(".") or "the job"
    if not isinstance(data, dict):
        return {}, [f"{where} is {_shown(data)}, not a table of fields: write {{ ... }} with field = value lines."]
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, raw in data.items():
        if key in skip:
            continue
        f = fields.get(key) if isinstance(key, str) else None
        if f is None:
            if strict_keys:
                close = difflib.get_close_matches(str(key), list(fields), n=1)
                hint = f"did you mean {prefix}{close[0]}?" if close else f"the known ones are {', '.join(fields)}."
                problems.append(f"{prefix}{key} is not a field of {where}: {hint}")
            continue
        ok, value = coerce(raw, hints[key])
        if not ok:
            problems.append(f"{prefix}{key} is {_shown(raw)}: write {_type_text(hints[key])}{_example(f)} instead.")
            continue
        values[key] = value
    return values, problems


def range_problems(values: Mapping[str, Any], ranges: Mapping[str, Range], prefix: str = "") -> list[str]:
    """One sentence per number outside its range (fields missing or None are skipped)."""
    out = []
    for key, rng in ranges.items():
        value = values.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            problem = rng.problem(prefix + key, value)
            if problem:
                out.append(problem)
    return out


def text_problem(field: str, value: str, max_chars: int = TEXT_MAX_CHARS, allow_empty: bool = True) -> str | None:
    """Free text (a path, a model name): no control characters, bounded length."""
    if not value and not allow_empty:
        return f"{field} is empty: write it in quotes."
    if any(unicodedata.category(c) in ("Cc", "Cs", "Cf", "Zl", "Zp") for c in value):
        # Cf: direction overrides such as U+202E would show the text reversed wherever it is printed
        return f"{field} contains control characters (a stray newline or tab, or a direction mark?): retype it."
    if len(value) > max_chars:
        return f"{field} is {len(value)} characters long: keep it under {max_chars}."
    return None
