"""Structured answers: a declared schema parses an LLM's text or rejects it.

Three schemas cover the archetype questions: :class:`YesNo` (an answer per sample, averaged over
samples into a probability), :class:`NumberRange` (a number in ``[low, high]``) and
:class:`OneOf` (one of k options, as its index). ``parse`` returns a float or raises
:class:`InvalidAnswer` naming what was wrong; it never turns a bad answer into a default.

Accepted forms: the bare answer (``"yes"``, ``"Yes."``, ``"0.4"``), an answer followed by a
reason (``"No, because ..."``) and JSON ``{"answer": ...}``. Ambiguous text (both "yes" and
"no" as the leading answer, two numbers, an option name inside another) is rejected.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Protocol

_WORD = re.compile(r"[a-z]+(?:[-_][a-z]+)*")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?%?")


class InvalidAnswer(ValueError):
    """An answer that does not fit the schema."""


class Schema(Protocol):
    """What a structured answer declares."""

    #: text appended to the prompt telling the model how to answer.
    instructions: str

    def parse(self, text: str) -> float: ...

    def choices(self) -> list[str] | None:
        """The allowed answers for guided decoding (None: use :meth:`json_schema`)."""
        ...

    def json_schema(self) -> dict: ...


def _unwrap_json(text: str) -> str:
    """The ``answer`` of a JSON object answer, else the stripped text."""
    t = text.strip()
    if t.startswith("```"):
        t = t.strip("`").removeprefix("json").strip()
    if t.startswith("{"):
        try:
            obj = json.loads(t)
        except json.JSONDecodeError as err:
            raise InvalidAnswer(f"malformed JSON answer {text!r}: {err.msg}") from None
        if not isinstance(obj, dict) or "answer" not in obj:
            raise InvalidAnswer(f"JSON answer without an 'answer' key: {text!r}")
        return str(obj["answer"]).strip()
    return t


def _head(text: str, words: int = 3) -> list[str]:
    """The first few words, lower-cased (the answer comes first; a reason may follow)."""
    return _WORD.findall(text.lower())[:words]


@dataclasses.dataclass(frozen=True)
class YesNo:
    """A yes/no question; ``parse`` gives 1.0 for yes, 0.0 for no."""

    instructions: str = "Answer with one word: yes or no."

    def parse(self, text: str) -> float:
        body = _unwrap_json(text)
        if not body:
            raise InvalidAnswer("empty answer")
        head = _head(body)
        yes = any(w in ("yes", "y", "true") for w in head)
        no = any(w in ("no", "n", "false") for w in head)
        if yes and no:
            raise InvalidAnswer(f"ambiguous yes/no answer {text[:80]!r}")
        if not (yes or no):
            raise InvalidAnswer(f"no yes/no at the start of answer {text[:80]!r}")
        return 1.0 if yes else 0.0

    def choices(self) -> list[str]:
        return ["yes", "no"]

    def json_schema(self) -> dict:
        return {
            "type": "object",
            "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
            "required": ["answer"],
        }


@dataclasses.dataclass(frozen=True)
class NumberRange:
    """A number in ``[low, high]`` (a trailing % divides by 100 when ``high <= 1``)."""

    low: float
    high: float
    instructions: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"NumberRange needs finite low < high, got {self.low}, {self.high}")
        if not self.instructions:
            object.__setattr__(
                self,
                "instructions",
                f"Answer with one number between {self.low:g} and {self.high:g}.",
            )

    def parse(self, text: str) -> float:
        body = _unwrap_json(text)
        if not body:
            raise InvalidAnswer("empty answer")
        found = _NUMBER.findall(body)
        if not found:
            raise InvalidAnswer(f"no number in answer {text[:80]!r}")
        if len(set(found)) > 1:
            raise InvalidAnswer(f"several numbers {found[:4]} in answer {text[:80]!r}")
        token = found[0]
        value = float(token.rstrip("%"))
        if token.endswith("%") and self.high <= 1:
            value /= 100
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise InvalidAnswer(f"{value} is outside [{self.low:g}, {self.high:g}]")
        return value

    def choices(self) -> None:
        return None

    def json_schema(self) -> dict:
        return {
            "type": "object",
            "properties": {"answer": {"type": "number", "minimum": self.low, "maximum": self.high}},
            "required": ["answer"],
        }


@dataclasses.dataclass(frozen=True)
class OneOf:
    """One of ``options``; ``parse`` gives the option's index as a float."""

    options: tuple[str, ...]
    instructions: str = ""

    def __post_init__(self) -> None:
        opts = tuple(o.strip().lower() for o in self.options)
        if len(opts) < 2 or len(set(opts)) != len(opts) or not all(opts):
            raise ValueError(f"OneOf needs at least 2 distinct non-empty options: {self.options}")
        object.__setattr__(self, "options", opts)
        if not self.instructions:
            object.__setattr__(
                self, "instructions", f"Answer with exactly one of: {', '.join(opts)}."
            )

    def parse(self, text: str) -> float:
        body = _unwrap_json(text).lower().strip(" .!\"'\n")
        if not body:
            raise InvalidAnswer("empty answer")
        if body in self.options:
            return float(self.options.index(body))
        hits = [i for i, o in enumerate(self.options) if re.search(rf"\b{re.escape(o)}\b", body)]
        if len(hits) != 1:
            what = "several options" if hits else "no option"
            raise InvalidAnswer(f"{what} of {self.options} in answer {text[:80]!r}")
        return float(hits[0])

    def choices(self) -> list[str]:
        return list(self.options)

    def json_schema(self) -> dict:
        return {
            "type": "object",
            "properties": {"answer": {"type": "string", "enum": list(self.options)}},
            "required": ["answer"],
        }
