"""The house rules of the package, checked on its source (ARCHITECTURE.md, "Layers"):

- imports point one way: foundation ← configuration ← data ← methods ← train/evaluate ← reports ←
  pipeline ← command-line tools; a module imports from its own layer or the ones below;
- no function-level import of a `vslrepro` module (a deferred import hides a cycle), except one
  marked `# optional dependency:` (an import that needs a dependency the package does not require);
- no import cycle between modules;
- the command modules are leaves (only the CLI imports them), and the methods' private plumbing
  (`vslrepro.methods._*`) is imported by the methods package only;
- no module outside the dataset modules spells a dataset's registry name as a string literal (a
  branch on a dataset name): what differs between datasets belongs to their modules.

The checker itself is tested on a small package written here, so that a violation is seen to fail.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from vslrepro.data.datasets import DATASETS
from vslrepro.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "vslrepro"

# Bottom to top; a module's layer is that of its longest matching prefix.
LAYERS = (
    ("foundation", ("vslrepro", "vslrepro.paths", "vslrepro.atomic", "vslrepro.seeding", "vslrepro.provenance",
                    "vslrepro.metrics")),
    ("configuration", ("vslrepro.config",)),
    ("data", ("vslrepro.data",)),
    ("methods", ("vslrepro.methods",)),
    ("train/evaluate", ("vslrepro.profiles", "vslrepro.pretrained", "vslrepro.objectprior", "vslrepro.factory",
                        "vslrepro.layout", "vslrepro.train", "vslrepro.evaluate")),
    ("reports", ("vslrepro.results", "vslrepro.tables", "vslrepro.figures", "vslrepro.teaching")),
    ("pipeline", ("vslrepro.stages", "vslrepro.pipeline")),
    ("commands", ("vslrepro.__main__", "vslrepro.commands")),
)
OPTIONAL_MARK = "# optional dependency:"


@dataclass(frozen=True)
class Import:
    """One import statement of a package module: who imports what, where, and how."""

    module: str        # the importing module
    target: str        # the imported module (a submodule when `from package import submodule`)
    line: int
    top_level: bool    # at module level (not inside a function or class body)
    marked: bool       # the line carries OPTIONAL_MARK


def module_name(path: Path, root: Path) -> str:
    """`vslrepro.data.splits` for `<root>/vslrepro/data/splits.py` (a package: its `__init__`)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(package: Path) -> tuple[set[str], list[Import]]:
    """Every module of `package` and every import of a module of the package, from the source."""
    root = package.parent
    files = sorted(package.rglob("*.py"))
    modules = {module_name(path, root) for path in files}
    found = []
    for path in files:
        name = module_name(path, root)
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source)
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                           for alias in node.names]
            else:
                continue
            for target in targets:
                if target.split(".")[0] == package.name:
                    found.append(Import(name, target, node.lineno, id(node) in top,
                                        OPTIONAL_MARK in lines[node.lineno - 1]))
    return modules, found


def layer_of(module: str) -> int:
    """The index in LAYERS of the layer `module` belongs to."""
    best, depth = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and prefix.count(".") > depth:
                best, depth = index, prefix.count(".")
    if best is None:
        raise AssertionError(f"module {module} is in no layer of LAYERS: add it to ARCHITECTURE.md and here")
    return best


def violations(package: Path) -> list[str]:
    """Every breach of the house rules in `package`'s source, one line each (empty: none)."""
    modules, imports = package_imports(package)
    problems = []
    for imp in imports:
        where = f"{imp.module} line {imp.line}: imports {imp.target}"
        here, there = layer_of(imp.module), layer_of(imp.target)
        if there > here:
            problems.append(f"{where}, against the direction ({LAYERS[here][0]} imports {LAYERS[there][0]})")
        if not imp.top_level and not imp.marked:
            problems.append(f"{where} inside a function or class (a deferred import; mark an optional "
                            f"dependency with '{OPTIONAL_MARK} ...')")
        if ".commands" in imp.target and not imp.module.startswith(imp.target.rsplit(".commands", 1)[0] + ".commands") \
                and not imp.module.endswith("__main__"):
            problems.append(f"{where}: the commands are leaves, only the CLI imports them")
        private = imp.target.rsplit(".", 1)
        if private[-1].startswith("_") and private[-1] != "__main__" \
                and not imp.module.startswith(private[0] + ".") and imp.module != private[0]:
            problems.append(f"{where}: a private module of {private[0]}; import from {private[0]}")
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for imp in imports:
        if imp.top_level and imp.target in graph and imp.target != imp.module:
            graph[imp.module].add(imp.target)
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_keeps_the_house_rules():
    assert violations(PACKAGE) == []


def test_every_module_is_in_a_layer():
    modules, _ = package_imports(PACKAGE)
    assert all(layer_of(module) is not None for module in modules)


def test_no_dataset_name_outside_the_dataset_modules():
    """A string literal equal to a registered dataset name, outside `vslrepro/data/datasets/`, is a
    branch or a default naming one dataset; display text (docstrings, messages) is longer."""
    names = set(DATASETS)
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "datasets" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(REPO_ROOT)} line {node.lineno}: {node.value!r}")
    assert found == []


# ---------------------------------------------------------------- the checker catches violations

def _write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "vslrepro"


@pytest.mark.parametrize("files, expected", [
    ({"vslrepro/data/x.py": "from vslrepro import stages\n", "vslrepro/stages.py": ""},
     "vslrepro.data.x line 1: imports vslrepro.stages, against the direction (data imports pipeline)"),
    ({"vslrepro/train.py": "def f():\n    from vslrepro import metrics\n", "vslrepro/metrics/__init__.py": ""},
     "vslrepro.train line 2: imports vslrepro.metrics inside a function"),
    ({"vslrepro/stages.py": "from vslrepro.commands import check\n", "vslrepro/commands/check.py": ""},
     "the commands are leaves"),
    ({"vslrepro/factory.py": "from vslrepro.methods._base import X\n", "vslrepro/methods/_base.py": ""},
     "a private module of vslrepro.methods"),
    ({"vslrepro/data/a.py": "from vslrepro.data import b\n", "vslrepro/data/b.py": "from vslrepro.data import a\n"},
     "import cycle: vslrepro.data.a -> vslrepro.data.b"),
])
def test_the_checker_finds_each_kind_of_violation(tmp_path, files, expected):
    found = violations(_write(tmp_path, {"vslrepro/__init__.py": "", **files}))
    assert any(expected in line for line in found), found


def test_the_checker_accepts_a_marked_optional_import(tmp_path):
    package = _write(tmp_path, {"vslrepro/__init__.py": "", "vslrepro/metrics/__init__.py": "",
                                "vslrepro/train.py": "def f():\n    from vslrepro import metrics  "
                                                     "# optional dependency: none, a test\n"})
    assert violations(package) == []
