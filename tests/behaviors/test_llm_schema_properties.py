"""Property-based tests of answer parsing: whatever arrives, a value in range or InvalidAnswer.

What a malformed server reply or a rambling model can hand the schema: any text, any JSON
value under ``answer``, deep nesting, huge numbers, and values that are not text at all.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from populace.behaviors.llm import InvalidAnswer, NumberRange, OneOf, YesNo

SCHEMAS = (
    (YesNo(), lambda v: v in (0.0, 1.0)),
    (NumberRange(-5, 10), lambda v: -5 <= v <= 10),
    (NumberRange(0, 1), lambda v: 0 <= v <= 1),
    (OneOf(("stay home", "stay", "go out")), lambda v: v in (0.0, 1.0, 2.0)),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
NOT_TEXT = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.binary(max_size=20)
    | st.lists(st.text(max_size=5), max_size=3)
    | st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)
)
#: what may surround an answer without changing it.
DRESSING = st.text(alphabet=" \t\n\"'`*_#>~", max_size=4)


def parses_in_range_or_is_invalid(text: object) -> None:
    for schema, in_range in SCHEMAS:
        try:
            value = schema.parse(text)
        except InvalidAnswer as err:
            assert str(err)  # a message naming the problem
            continue
        assert isinstance(value, float) and math.isfinite(value) and in_range(value), (
            schema,
            text,
            value,
        )


@settings(max_examples=300, deadline=None)
@given(NOT_TEXT)
def test_a_value_that_is_not_text_is_an_invalid_answer(value):
    for schema, _ in SCHEMAS:
        with pytest.raises(InvalidAnswer, match="not text"):
            schema.parse(value)


@settings(max_examples=400, deadline=None)
@given(JSON)
def test_any_json_answer_parses_in_range_or_is_invalid(value):
    parses_in_range_or_is_invalid(json.dumps({"answer": value}))
    parses_in_range_or_is_invalid(json.dumps(value))
    if isinstance(value, list | dict) or value is None:
        for schema, _ in SCHEMAS:
            with pytest.raises(InvalidAnswer):
                schema.parse(json.dumps({"answer": value}))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='{}[]":,0123456789.eE-+ yesnoanswer', max_size=80))
def test_json_like_text_parses_in_range_or_is_invalid(text):
    parses_in_range_or_is_invalid(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"answer": ' + "[" * 50000 + "]" * 50000 + "}",
        "{" + '"a": {' * 50000,
        '{"answer": ' + "9" * 5000 + "}",
        '{"answer": 1e999}',
        '{"answer": NaN}',
        "9" * 5000,
        "```json\n" + "{" * 20000 + "\n```",
    ],
    ids=["deep list", "deep object", "5000 digits", "overflowing float", "NaN", "digits", "fence"],
)
def test_pathological_answers_are_invalid_not_errors(text):
    for schema, _ in SCHEMAS:
        try:
            value = schema.parse(text)
        except InvalidAnswer:
            continue
        assert schema == SCHEMAS[0][0] or math.isfinite(value)  # "9"*5000 is an inf: invalid


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["yes", "Yes", "YES", "no", "No", "true", "False"]), DRESSING, DRESSING)
def test_dressing_never_changes_a_yes_no(word, before, after):
    expected = 1.0 if word.lower() in ("yes", "true") else 0.0
    assert YesNo().parse(before + word + after) == expected


@settings(max_examples=300, deadline=None)
@given(st.floats(-5, 10, allow_nan=False), st.sampled_from(["", ".", " (my guess)", "\n"]))
def test_a_number_in_range_reads_back_exactly(x, tail):
    assert NumberRange(-5, 10).parse(repr(x) + tail) == x
    assert NumberRange(-5, 10).parse(json.dumps({"answer": x})) == x


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False).filter(lambda x: not -5 <= x <= 10))
def test_a_number_out_of_range_is_invalid(x):
    with pytest.raises(InvalidAnswer):
        NumberRange(-5, 10).parse(repr(x))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["stay home", "stay", "go out"]), DRESSING, st.sampled_from(["", "."]))
def test_an_option_reads_back_as_its_index(option, before, after):
    schema = OneOf(("stay home", "stay", "go out"))
    assert schema.parse(before + option + after) == float(schema.options.index(option))
