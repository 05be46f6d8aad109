"""The counts flow's outputs collected in lists, and the settings its in-process tests use."""

from __future__ import annotations

from bytewax.testing import TestingSink

from core.records import Accepted, CountUpdate, DeadLetter, HotChange, WindowPart
from core.settings import FlowSettings
from flows.counts import CountsSinks

SETTINGS = FlowSettings(
    count_shards=8, window_s=1, lateness_s=0, hot_threshold=50, hot_window_s=10, hot_bucket_s=1
)


class Outputs:
    """Lists that the TestingSinks append to (not cleared between runs)."""

    def __init__(self) -> None:
        self.dead: list[DeadLetter] = []
        self.events: list[Accepted] = []
        self.windows: list[WindowPart] = []
        self.counts: list[CountUpdate] = []
        self.hot: list[HotChange] = []

    def sinks(self) -> CountsSinks:
        return CountsSinks(
            TestingSink(self.dead),
            TestingSink(self.events),
            TestingSink(self.windows),
            [TestingSink(self.counts)],
            [TestingSink(self.hot)],
        )
