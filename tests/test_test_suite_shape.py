"""No test module imports another.

A helper two test files share lives in conftest.py or in a plain module beside them
(tests/browser.py, tests/fake_kubernetes.py). Imported from a test module instead, it ties one file's
private names to another file's tests, so tidying one breaks the other.
"""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imports_of_test_modules(folder: Path = TESTS) -> list[str]:
    """Every import of one of `folder`'s `test_*.py` modules by a module there, as `file:line: module`."""
    test_modules = {p.stem for p in folder.glob("test_*.py")}
    found = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):  # `from test_x import y`, and `from tests import test_x`
                names = [f"{node.module or ''}.{alias.name}".lstrip(".") for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                module = parts[1] if parts[0] == "tests" and len(parts) > 1 else parts[0]
                if module in test_modules and module != path.stem:
                    found.append(f"{path.name}:{node.lineno}: {module}")
                    break
    return found


def test_no_test_module_imports_another():
    assert imports_of_test_modules() == []


def test_an_import_of_another_test_module_is_found(tmp_path):
    (tmp_path / "test_seldon.py").write_text("def _rbac():\n    return {}\n")
    (tmp_path / "conftest.py").write_text("def only_use_case():\n    pass\n")
    (tmp_path / "test_deployer.py").write_text(
        "from conftest import only_use_case\n"
        "from test_seldon import _rbac\n"
        "\n"
        "\n"
        "def later():\n"
        "    import tests.test_seldon\n"
        "    from tests import test_seldon\n"
    )
    assert imports_of_test_modules(tmp_path) == [
        "test_deployer.py:2: test_seldon",
        "test_deployer.py:6: test_seldon",
        "test_deployer.py:7: test_seldon",
    ]
