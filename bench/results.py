"""bench/RESULTS.md is shared by every benchmark: each one replaces its own `## ` section and leaves the
others (and hand-written notes in them) alone. Rewriting the whole file, or appending, lost or repeated
the other benchmarks' tables."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
TITLE = "# Assay benchmarks"


def write_section(heading: str, body: str, path: Path = RESULTS) -> None:
    """Replace the section whose `## ` heading starts with `heading` (the first line of the new text), or
    append it. `heading` is the stable part (e.g. "## Serving"); the rest of the line may carry a date."""
    if not heading.startswith("## "):
        raise ValueError(f"a section heading starts with '## ', not {heading!r}")
    text = path.read_text() if path.exists() else f"{TITLE}\n"
    lines = text.rstrip("\n").split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    new = body.strip("\n").split("\n")
    if not new[0].startswith(heading):
        raise ValueError(f"the section's first line must start with {heading!r}, not {new[0]!r}")
    if start is None:
        lines += ["", *new]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = [*new, ""] if end < len(lines) else new
    path.write_text("\n".join(lines) + "\n")
