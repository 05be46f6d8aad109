"""What the benchmarks of one run share: the run's size, and figures one measures for another."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.results import Result


@dataclass
class Ctx:
    """State shared by the benchmarks of one run."""

    quick: bool
    api_max_rate: float | None = None  # the API's max like rate, set by api_vs_pgbench
    system_max_rate: float | None = None  # the whole system's, set by system_throughput


Benchmark = Callable[[Ctx], Result]
