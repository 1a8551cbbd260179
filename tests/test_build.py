"""Packing, checked without building: what the build does with signals."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from runimage import build


@pytest.fixture
def handlers() -> Iterator[None]:
    saved = {number: signal.getsignal(number) for number in (*build.ENDING_SIGNALS, signal.SIGINT)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


@pytest.mark.usefixtures("handlers")
def test_the_first_ending_signal_makes_later_ones_ignored() -> None:
    """A signal to the build's process group reaches the launcher twice (from the terminal and
    from Run, which passes it on): the second used to interrupt the clean-up of the first with
    a traceback."""
    for number in build.ENDING_SIGNALS:
        signal.signal(number, build._interrupt)
    with pytest.raises(build.Interrupted) as stop:
        signal.raise_signal(signal.SIGTERM)
    assert stop.value.number == signal.SIGTERM
    for number in (*build.ENDING_SIGNALS, signal.SIGINT):
        assert signal.getsignal(number) == signal.SIG_IGN
    signal.raise_signal(signal.SIGTERM)
