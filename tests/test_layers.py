"""The folders are layers, and an import only ever points down.

Lowest first: what runs inside a training pod or a model server must not drag the platform in with it, and
the platform's own core must not depend on the tools built on it. Every import counts, a deferred one inside
a function too: it runs sooner or later. `bench/` and `tests/` sit on top and may import anything.
"""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Each package, with the reason it sits where it does.
LAYERS = (
    "training",     # the Pipes entrypoint and model families: runs in the training pod with dagster-pipes only
    "monitoring",   # drift and live performance as plain functions over frames
    "assay",        # the kernel: spec, settings, contract, SQL identifiers, release and approval logs
    "serving",      # runs inside the model server: runtime, request validation, inference log
    "resources",    # how to reach things: warehouse, landing zone, registry, trainers, deployers
    "automation",   # sensors and automation conditions
    "assets",       # the asset graph of a use case
    "definitions",  # the code location: wiring only
    "harness",      # runs the code location in process (demo, build, simulation, benchmarks)
    "cli",          # the `assay` command and the operator tools behind it
)


def first_party_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import of a first-party package in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name.split(".")[0]) for name in names if name.split(".")[0] in LAYERS]
    return found


def upward_imports(root: Path = REPO) -> list[str]:
    """Every import from a lower layer into a higher one, as `file:line: a -> b`."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    problems = []
    modules = [root / "definitions.py"] + [p for name in LAYERS for p in sorted((root / name).rglob("*.py"))]
    for path in (p for p in modules if p.is_file()):
        own = path.relative_to(root).parts[0].removesuffix(".py")  # its folder, or definitions.py
        for line, target in first_party_imports(path):
            if rank[target] > rank[own]:
                problems.append(f"{path.relative_to(root)}:{line}: {own} -> {target}")
    return problems


def test_every_top_level_package_has_a_place_in_the_layer_order():
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")}
    assert packages - set(LAYERS) == set(), "a new package: give it a place in LAYERS (and the README's layout)"
    assert set(LAYERS) - {"definitions"} <= packages


def test_no_module_imports_a_layer_above_its_own():
    assert upward_imports() == []


def test_an_import_from_a_lower_layer_into_a_higher_one_is_found(tmp_path):
    (tmp_path / "assay").mkdir()
    (tmp_path / "assay" / "spec.py").write_text("import json\n\n\ndef later():\n    from cli.main import main\n")
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "main.py").write_text("from assay.spec import later\n")
    assert upward_imports(tmp_path) == ["assay/spec.py:5: assay -> cli"]


@pytest.mark.parametrize("package", LAYERS)
def test_the_layer_order_names_real_folders(package):
    assert (REPO / package).is_dir() or (REPO / f"{package}.py").is_file()


def readme_layout() -> dict[str, str]:
    """The README's layout table: path -> what its row says."""
    text = (REPO / "README.md").read_text()
    table = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| `")]
    return {cells[1].strip().strip("`"): cells[2] for cells in rows}


def test_the_readme_layout_table_has_a_row_for_every_layer():
    rows = readme_layout()
    assert [name for name in LAYERS if f"{name}/" not in rows and f"{name}.py" not in rows] == []


def test_every_module_the_readme_layout_table_names_exists_in_its_folder():
    missing = []
    for path, text in readme_layout().items():
        folder = REPO / path
        if not folder.is_dir():
            continue
        for module in re.findall(r"`([\w/]+\.(?:py|json))`", text):
            if not list(folder.rglob(module.split("/")[-1])) and not (folder / module).exists():
                missing.append(f"{path}{module}")
    assert missing == []
