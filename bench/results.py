"""Benchmark results: one ``<name>.json`` per benchmark and ``RESULTS.md`` built from them all."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.settings import REPO_ROOT

RESULTS_DIR = REPO_ROOT / "bench" / "results"
Json = dict[str, Any]  # a JSON object as read back from a result file


@dataclass
class Metric:
    """One row of RESULTS.md: our figure, the machine's limit measured beside it, the ratio."""

    label: str
    ours: float | None
    limit: float | None
    unit: str
    ratio: float | None
    goal: str
    met: bool | None
    ours_text: str = ""
    limit_text: str = ""
    note: str = ""


@dataclass
class Result:
    """What one benchmark writes to ``bench/results/<name>.json``."""

    name: str
    quick: bool
    config: dict[str, object] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    absolute: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    date: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    seconds: float = 0.0

    @property
    def met(self) -> bool | None:
        """Every goal met (False on error; None if a goal could not be judged)."""
        if self.error:
            return False
        vals = [m.met for m in self.metrics]
        if not vals or any(v is None for v in vals):
            return None
        return all(vals)

    def to_json(self) -> Json:
        """The JSON object written to the result file."""
        d = asdict(self)
        d["met"] = self.met
        return d


def results_dir(quick: bool) -> Path:
    """Full runs write ``bench/results``; ``--quick`` smoke runs ``bench/results/quick``."""
    d = RESULTS_DIR / "quick" if quick else RESULTS_DIR
    d.mkdir(parents=True, exist_ok=True)
    return d


def result_name(name: str, profile: str) -> str:
    """The result's name in ``profile``: ``<name>`` in the single profile,
    ``<name>.<profile>`` in another (written beside it, not over it)."""
    return name if profile == "single" else f"{name}.{profile}"


def write_result(r: Result) -> Path:
    """Write ``<name>.json``; return its path."""
    path = results_dir(r.quick) / f"{r.name}.json"
    path.write_text(json.dumps(r.to_json(), indent=2, default=str) + "\n")
    return path


def _header(quick: bool, dates: list[str]) -> list[str]:
    smoke = [
        "Smoke run (`--quick`): 10x smaller topics and 3-4x shorter phases; the flow "
        "figures are dominated by start-up and say little. Use the full run's numbers.",
        "",
    ]
    return [
        "# likestream benchmark results" + (" (quick smoke run)" if quick else ""),
        "",
        f"Runs: {dates[0] if dates else '?'} to {dates[-1] if dates else '?'} (UTC). Machine: 2 "
        "shared, noisy cores; the whole local stack (Postgres, Redis, Kafka, Connect, API, "
        "flows) runs on them, and other work may too (see the notes). Every figure is set "
        "against the machine's own limit measured side by side in the same run.",
        "",
        "Ratio = ours / limit: for rates higher is better; for latencies and bytes lower is "
        "better; `hot_post` is hot / uniform, `two_processes` is our 2p/1p speed-up over the "
        "raw 2p/1p speed-up; for `system_throughput` the limit is the rate at which the "
        "CPU per like it measured would fill the machine's cores. The goal is checked on "
        "the figure it names.",
        "",
        *(smoke if quick else []),
        "| benchmark | ours | machine limit (same run) | ratio | goal | met |",
        "|---|---|---|---|---|---|",
    ]


def _rows(name: str, r: Json) -> list[str]:
    if r.get("error"):
        err = " ".join(r["error"].split())[:160].replace("|", "/")
        return [f"| {name} | ERROR: {err} | | | | **no** |"]
    rows = []
    for m in r["metrics"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[m["met"]]
        ratio_s = "n/a" if m["ratio"] is None else f"{m['ratio']:.2f}x"
        label = name if m["label"] == name else f"{name}: {m['label']}"
        cells = [label, m["ours_text"], m["limit_text"], ratio_s, m["goal"], met]
        rows.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return rows


def _notes(name: str, r: Json) -> list[str]:
    notes = r.get("notes") or []
    if not notes:
        return []
    head = f"**{name}** ({r.get('date', '')}, {r.get('seconds', 0):.0f} s):"
    return ["", head, *(f"- {x}" for x in notes)]


def _ordered(found: dict[str, Json], order: list[str]) -> list[str]:
    """Benchmarks in suite order, each followed by its variants (``<name>.<variant>``: a
    profile, a setting), then unknown ones."""
    base = {n: n.split(".", 1)[0] for n in found}
    known = sorted((n for n in found if base[n] in order), key=lambda n: (order.index(base[n]), n))
    return known + sorted(n for n in found if base[n] not in order)


def render_markdown(quick: bool, order: list[str]) -> Path:
    """RESULTS.md from every ``<name>.json`` present (so ``--only`` updates one row)."""
    d = results_dir(quick)
    found: dict[str, Json] = {p.stem: json.loads(p.read_text()) for p in d.glob("*.json")}
    names = _ordered(found, order)
    lines = _header(quick, sorted(r.get("date", "") for r in found.values()))
    for n in names:
        lines.extend(_rows(n, found[n]))
    lines += ["", "Full configuration, absolute numbers and CPU accounting: `<name>.json`."]
    for n in names:
        lines.extend(_notes(n, found[n]))
    path = d / "RESULTS.md"
    path.write_text("\n".join(lines) + "\n")
    return path
