"""The check's report: rows of measured figures, written as report.md (one ``##`` heading per section) and
report.csv (one line per figure). Rewritten after every section, so a run killed at its time limit still
leaves the sections it finished."""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

SECTIONS = (  # report order, training speed first; the run order differs (see check.py)
    "Training steps",
    "Numerics",
    "Propagation on GPU at real DAVIS sizes",
    "Feeding the step",
    "Environment",
)
CSV_FIELDS = ("section", "item", "metric", "value", "unit", "note")


@dataclass
class Row:
    """One measured figure (or one error: metric ``error``, value the exception)."""

    section: str
    item: str
    metric: str
    value: float | int | str | bool | None
    unit: str = ""
    note: str = ""


def fmt(value) -> str:
    """Short, stable text for a value: 4 significant digits for floats."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


@dataclass
class Report:
    """Collects rows per section plus free-text notes, and writes both files."""

    out: Path
    title: str
    preamble: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)  # section -> "ok (12 s)" / "FAILED ..." / ...

    def add(self, section: str, item: str, metric: str, value, unit: str = "", note: str = "") -> None:
        """Record one figure."""
        if section not in SECTIONS:
            raise ValueError(f"unknown section {section!r}; sections are {SECTIONS}")
        self.rows.append(Row(section, item, metric, value, unit, note))

    def note(self, section: str, text: str) -> None:
        """A sentence printed under the section's table."""
        self.notes.setdefault(section, []).append(text)

    def errors(self) -> list[Row]:
        """Every recorded error row."""
        return [r for r in self.rows if r.metric == "error"]

    def markdown(self) -> str:
        """The whole report as markdown."""
        lines = [f"# {self.title}", "", *self.preamble, ""]
        for section in SECTIONS:
            lines += [f"## {section}", ""]
            if section in self.status:
                lines += [f"Section status: {self.status[section]}.", ""]
            rows = [r for r in self.rows if r.section == section]
            if rows:
                lines += ["| item | metric | value | unit | note |", "|---|---|---|---|---|"]
                for r in rows:
                    cells = (r.item, r.metric, fmt(r.value), r.unit, r.note)
                    lines.append(
                        "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
                    )
                lines.append("")
            elif section not in self.status:
                lines += ["Not run.", ""]
            for text in self.notes.get(section, []):
                lines += [text, ""]
        return "\n".join(lines).rstrip() + "\n"

    def write(self) -> None:
        """Write report.md and report.csv into ``out`` (atomically enough: whole-file rewrites)."""
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "report.md").write_text(self.markdown())
        with open(self.out / "report.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            w.writeheader()
            for r in self.rows:
                value = format(r.value, ".6g") if isinstance(r.value, float) else r.value
                w.writerow({**asdict(r), "value": "" if value is None else value})
