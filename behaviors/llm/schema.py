"""Structured answers: a declared schema parses an LLM's text or rejects it.

Three schemas cover the archetype questions: :class:`YesNo` (an answer per sample, averaged over
samples into a probability), :class:`NumberRange` (a number in ``[low, high]``) and
:class:`OneOf` (one of k options, as its index). ``parse`` returns a float or raises
:class:`InvalidAnswer` naming what was wrong; it never turns a bad answer into a default.

Accepted forms: the bare answer (``"yes"``, ``"**Yes.**"``, ``"0.4"``), an answer followed by a
reason (``"No, because ..."``) and JSON ``{"answer": ...}``. A yes/no or option answer must
*start* with the answer (after quotes, markdown and punctuation; any case): ``"Not sure, yes"``,
``"I will not stay home"`` and ``"N/A"`` are rejected, never read as the option they mention.
Non-answers that begin like one (``"No idea"``, ``"No comment"``) and ambiguous text (both "yes"
and "no" leading, two numbers, a second option after the first) are rejected too, and so is an
answer that is not text at all (a number, None, a list: what a malformed server reply may carry)
or a JSON ``answer`` that is not a string, number or boolean.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Protocol

_WORD = re.compile(r"[a-z]+(?:[-_][a-z]+)*")
#: what may surround an answer: whitespace, quotes, markdown and punctuation.
_DRESSING = " \t\r\n\"'`*_#>~.,;:!?()[]{}-"
#: non-answers that begin like an answer ("No idea" is not "no").
_NON_ANSWERS = ("no idea", "no clue", "no comment", "no answer", "no opinion", "n/a")
_YES, _NO = ("yes", "true"), ("no", "false")
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
    if not isinstance(text, str):
        raise InvalidAnswer(f"answer is a {type(text).__name__} ({str(text)[:40]}), not text")
    t = text.strip()
    if t.startswith("```"):
        t = t.strip("`").removeprefix("json").strip()
    if t.startswith("{"):
        try:
            obj = json.loads(t)
        except json.JSONDecodeError as err:
            raise InvalidAnswer(f"malformed JSON answer {text[:80]!r}: {err.msg}") from None
        except (ValueError, RecursionError) as err:  # a 5000-digit integer, deep nesting
            raise InvalidAnswer(f"unreadable JSON answer {text[:80]!r}: {err!r:.80}") from None
        if not isinstance(obj, dict) or "answer" not in obj:
            raise InvalidAnswer(f"JSON answer without an 'answer' key: {text[:80]!r}")
        answer = obj["answer"]
        if not isinstance(answer, str | int | float):  # bool is an int; None, lists, objects
            raise InvalidAnswer(f"JSON answer is a {type(answer).__name__}: {text[:80]!r}")
        return str(answer).strip()
    return t


def _lead(text: str) -> str:
    """The answer lower-cased, without the quotes, markdown and punctuation around it."""
    body = _unwrap_json(text).lower().strip(_DRESSING)
    if not body:
        raise InvalidAnswer(f"empty answer {text[:80]!r}")
    return body


def _starts_with(body: str, phrase: str) -> bool:
    """Whether ``body`` starts with ``phrase`` as whole words."""
    return re.match(rf"{re.escape(phrase)}(?![a-z0-9])", body) is not None


def _non_answer(body: str) -> str:
    """The non-answer phrase ("no idea", "n/a") that ``body`` starts with, else ``""``."""
    return next((p for p in _NON_ANSWERS if _starts_with(body, p)), "")


@dataclasses.dataclass(frozen=True)
class YesNo:
    """A yes/no question; ``parse`` gives 1.0 for yes, 0.0 for no."""

    instructions: str = "Answer with one word: yes or no."

    def parse(self, text: str) -> float:
        body = _lead(text)
        if _non_answer(body):
            raise InvalidAnswer(f"non-answer {text[:80]!r}")
        if body in ("y", "n"):  # a single letter only as the whole answer
            return 1.0 if body == "y" else 0.0
        first = _WORD.match(body)
        word = first.group() if first else ""
        if word not in _YES + _NO:
            raise InvalidAnswer(f"answer {text[:80]!r} does not start with yes or no")
        head = _WORD.findall(body)[:3]
        other = _NO if word in _YES else _YES
        if any(w in other for w in head):
            raise InvalidAnswer(f"ambiguous yes/no answer {text[:80]!r}")
        return 1.0 if word in _YES else 0.0

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
    """One of ``options``; ``parse`` gives the index of the option the answer starts with."""

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
        exact = _unwrap_json(text).strip().lower()
        if exact in self.options:  # e.g. a guided-choice answer
            return float(self.options.index(exact))
        body = _lead(text)
        starts = [o for o in self.options if _starts_with(body, o)]
        if not starts:
            raise InvalidAnswer(f"answer {text[:80]!r} does not start with one of {self.options}")
        chosen = max(starts, key=len)  # "stay home" over an option "stay"
        if len(_non_answer(body)) > len(chosen):  # "no idea" is not the option "no"
            raise InvalidAnswer(f"non-answer {text[:80]!r}")
        rest = body[len(chosen) :]
        if any(re.search(rf"(?<![a-z0-9]){re.escape(o)}(?![a-z0-9])", rest) for o in self.options):
            raise InvalidAnswer(f"several options of {self.options} in answer {text[:80]!r}")
        return float(self.options.index(chosen))

    def choices(self) -> list[str]:
        return list(self.options)

    def json_schema(self) -> dict:
        return {
            "type": "object",
            "properties": {"answer": {"type": "string", "enum": list(self.options)}},
            "required": ["answer"],
        }
