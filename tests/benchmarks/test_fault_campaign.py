"""The fault campaign's classifier, and its population part end to end."""

import pytest

from populace.benchmarks import faults


def test_outcomes_are_classified_by_what_the_load_did(tmp_path):
    def raises(err):
        def load():
            raise err

        return load

    path = str(tmp_path / "ck.pt")
    assert faults._outcome(raises(ValueError(f"{path}: damaged")), [path], None) == "clear"
    assert faults._outcome(raises(EOFError("")), [path], None) == "traceback"
    assert faults._outcome(raises(KeyError(101)), [path], None) == "unnamed"
    assert faults._outcome(lambda: 1, [path], lambda v: v == 1) == "silent"
    assert faults._outcome(lambda: 2, [path], lambda v: v == 1) == "silent_wrong"


@pytest.mark.slow
def test_every_damaged_population_file_is_a_clear_error(tmp_path):
    cases = faults.population_cases(tmp_path)
    assert len(cases) > 90
    assert {outcome for _, outcome in cases} == {"clear"}
