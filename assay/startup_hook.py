"""DAGSTER_HOME follows ASSAY_HOME in every process of the venv, before Dagster reads it.

The plain `dagster` CLI (`dagster asset materialize -f definitions.py`, `dagster dev -w workspace.yaml`)
resolves its instance before it loads any of Assay's code, and without DAGSTER_HOME it runs in a
temporary instance in the working directory that is deleted on exit. Setting the variable in
definitions.py is therefore too late, and a `.env` file would only work from the repo root and cannot
derive an absolute path from a relative ASSAY_HOME. A `.pth` file in the venv's site-packages runs at
every interpreter start, whatever the entry point or working directory; `make install` writes it.

`python -m assay.startup_hook [SITE_PACKAGES]` installs it (default: this interpreter's purelib).
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

PTH_NAME = "assay_dagster_home.pth"  # sorts after __editable__.assay-*.pth, which makes `assay` importable

# One line, as .pth files require; a start-up hook must never stop the interpreter, so any failure
# (assay uninstalled, a bad ASSAY_ENV, a conflicting DAGSTER_HOME) is left for Assay's own entry
# points to report, which call the same function and raise.
PTH_LINE = ('import sys; exec("try:\\n from assay.startup_hook import on_interpreter_start\\n'
            ' on_interpreter_start()\\nexcept Exception:\\n pass")\n')


def on_interpreter_start() -> None:
    from assay.settings import export_dagster_home, state

    export_dagster_home(state())


def install(site_packages: Path | None = None) -> Path:
    target = Path(site_packages or sysconfig.get_paths()["purelib"]) / PTH_NAME
    target.write_text(PTH_LINE)
    return target


if __name__ == "__main__":
    print(f"wrote {install(Path(sys.argv[1]) if len(sys.argv) > 1 else None)}")
