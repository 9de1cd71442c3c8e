"""Shared helpers of the live view tests: runs that are stopped after each test, and waiting
for a frame."""

from __future__ import annotations

import time

import pytest

from populace.behaviors.llm import Completion
from populace.view import LiveRun


def wait_until(run: LiveRun, done, timeout: float = 60.0):
    """The first frame for which ``done(frame)`` holds (fails after ``timeout`` s)."""
    end = time.monotonic() + timeout
    frame = run.frame()
    while not done(frame):
        if time.monotonic() > end:
            raise AssertionError(f"timed out; last frame: step {frame.step}, {frame.status}")
        frame = run.wait(frame.version, timeout=0.5)
    return frame


@pytest.fixture
def wait_for():
    return wait_until


@pytest.fixture
def live():
    """``live(model, **options)``: a LiveRun stopped when the test ends."""
    runs = []

    def make(model, **options) -> LiveRun:
        run = LiveRun(model, **options)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.stop()


class ElderlyStayHome:
    """A backend whose residents aged 65+ answer yes, everyone else no."""

    name = "rule"
    model = "elderly-stay-home"

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, prompts, sampling, schema=None, seeds=None):
        self.calls += len(prompts)
        return [Completion("yes" if "65+" in p[0]["content"] else "no", 10, 1) for p in prompts]


@pytest.fixture
def elderly():
    """A backend class whose residents aged 65+ answer yes, everyone else no."""
    return ElderlyStayHome
