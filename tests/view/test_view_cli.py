"""`populace view`: bad input exits with status 2 and one line naming the problem, before any
server starts (the served app itself is tested in test_browser.py)."""

from __future__ import annotations

import pytest

from populace import cli


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["view", "nope"], "unknown model 'nope'"),
        (["view", "sir", "--set", "gamma=2"], "'gamma' must lie in [0, 1]"),
        (["view", "sir", "--set", "gama=0.1"], "unknown setting 'gama'"),
        (["view", "missing.py:build"], "no file missing.py"),
    ],
)
def test_bad_input_names_the_problem(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("flag", "value"), [("--fps", "0"), ("--fps", "nan"), ("--steps-per-frame", "0")]
)
def test_bad_view_flags_are_refused_by_name(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["view", "sir", flag, value])
    assert exit_.value.code == 2
    assert flag in capsys.readouterr().err


def test_view_is_listed_with_its_flags(capsys):
    with pytest.raises(SystemExit):
        cli.main(["view", "--help"])
    out = capsys.readouterr().out
    for flag in ("--port", "--host", "--steps-per-frame", "--fps", "--set", "--members"):
        assert flag in out
