"""The modules of ``src/`` import each other one way, and only by their public names.

The files are read with :mod:`ast`, never imported, so an import inside a function counts
as much as one at the top of a file. A module ``a.b`` is the file ``src/a/b.py``; a
package ``a`` is its ``src/a/__init__.py``. Importing a name from a package is an edge to
that ``__init__`` (which runs first, and imports what it imports); ``from . import x``
where ``x`` is a submodule is an edge to that submodule. The parents Python initialises
on the way to a submodule are not counted as edges: every submodule would otherwise form
a cycle with the ``__init__`` of its own package, which imports it by design. Imports
under ``if TYPE_CHECKING:`` count like any other (the layers go one way for types too).
"""

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


@dataclass(frozen=True)
class ImportEdge:
    """One name one module of ``src/`` takes from another.

    Attributes:
        importer: The importing module (``"npdl.data.sources"``).
        path: Its file.
        line: The line of the import, or of the attribute read.
        target: The module whose code runs for it (``"npdl.data.cifar"``).
        name: The name taken from ``target``; ``None`` when the whole module is.
    """

    importer: str
    path: Path
    line: int
    target: str
    name: str | None


def module_names(src: Path) -> dict[str, Path]:
    """Every module under ``src``, by dotted name (a package by its ``__init__.py``)."""
    modules = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for the expression ``a.b.c``; ``None`` for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def imports_of(src: Path) -> list[ImportEdge]:
    """Every import between modules of ``src``, at any depth of every file.

    Also the reads ``module.name`` through a name bound to a module of ``src`` (``from .
    import cifar`` then ``cifar._x``), as imports of ``name``.
    """
    modules = module_names(src)
    found = []
    for importer, path in modules.items():
        package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        bound = {}  # local name -> module of src it stands for

        def add(line, target, name, importer=importer, path=path):
            if target != importer:
                found.append(ImportEdge(importer, path, line, target, name))

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    prefixes = [".".join(parts[:n]) for n in range(len(parts), 0, -1)]
                    target = next((p for p in prefixes if p in modules), None)
                    if target is not None:
                        add(node.lineno, target, None)
                    if alias.asname and alias.name in modules:
                        bound[alias.asname] = alias.name
                    elif not alias.asname and parts[0] in modules:
                        bound[parts[0]] = parts[0]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if node.module else anchor
                if base not in modules:
                    continue
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    if submodule in modules:
                        add(node.lineno, submodule, None)
                        bound[alias.asname or alias.name] = submodule
                    else:
                        add(node.lineno, base, None if alias.name == "*" else alias.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _is_private(node.attr):
                dotted = _dotted(node.value)
                if dotted is None or dotted.split(".")[0] not in bound:
                    continue
                head, _, rest = dotted.partition(".")
                target = ".".join(filter(None, [bound[head], rest]))
                if target in modules:
                    add(node.lineno, target, node.attr)
    return found


def find_cycles(imports: list[ImportEdge]) -> list[list[ImportEdge]]:
    """One cycle of imports per back edge a depth-first walk of the graph meets."""
    edges: dict[str, dict[str, ImportEdge]] = {}
    for imp in imports:
        edges.setdefault(imp.importer, {}).setdefault(imp.target, imp)
    cycles, state, stack = [], {}, []

    def visit(module):
        state[module] = "open"
        for target, imp in sorted(edges.get(module, {}).items()):
            stack.append(imp)
            if state.get(target) == "open":
                start = next(i for i, s in enumerate(stack) if s.importer == target)
                cycles.append(list(stack[start:]))
            elif target not in state:
                visit(target)
            stack.pop()
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module)
    return cycles


def describe(cycle: list[ImportEdge]) -> str:
    """``a -> b (line 3 of a) -> a (line 7 of b)``."""
    hops = [cycle[0].importer]
    hops += [f"{imp.target} (line {imp.line} of {imp.importer})" for imp in cycle]
    return " -> ".join(hops)


def private_imports(imports: list[ImportEdge]) -> list[str]:
    """``path:line: name from module`` for each underscore name taken from another module."""
    return [
        f"{imp.path.relative_to(ROOT) if imp.path.is_relative_to(ROOT) else imp.path}:"
        f"{imp.line}: {imp.name} from {imp.target}"
        for imp in imports
        if imp.name is not None and _is_private(imp.name)
    ]


def test_the_modules_of_src_import_each_other_without_a_cycle():
    imports = imports_of(SRC)
    assert any(i.importer == "npdl" and i.target == "npdl.network" for i in imports)
    cycles = [describe(cycle) for cycle in find_cycles(imports)]
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_no_module_of_src_imports_an_underscore_name_of_another():
    found = private_imports(imports_of(SRC))
    assert found == [], "underscore names taken from another module:\n" + "\n".join(found)


def test_the_checks_see_cycles_inside_functions_and_private_names(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from .low import public\nfrom . import high\n")
    (package / "low.py").write_text(
        "def public():\n    from .high import helper\n    return helper()\n"
    )
    (package / "high.py").write_text(
        "from . import low\nfrom .low import _hidden\n\ndef helper():\n    return low._other\n"
    )
    imports = imports_of(tmp_path)
    cycles = find_cycles(imports)
    assert [[(i.importer, i.target) for i in c] for c in cycles] == [
        [("pkg.high", "pkg.low"), ("pkg.low", "pkg.high")]
    ]
    assert "line 2 of pkg.low" in describe(cycles[0])
    assert [(i.line, i.name) for i in imports if i.name and _is_private(i.name)] == [
        (2, "_hidden"),
        (5, "_other"),
    ]
