"""The code of ``src/`` stays in pieces a reader can hold: no function over 60 lines.

The files are read with :mod:`ast`, never imported. A function's length is its body
without the docstring: from the first statement after it to the end of the last one,
blank lines and comments inside included, the signature and the docstring not.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
MAX_FUNCTION_LINES = 60


def body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the end of the last one."""
    body = function.body
    if ast.get_docstring(function, clean=False) is not None:
        body = body[1:]
    if not body:  # only a docstring
        return 0
    return body[-1].end_lineno - body[0].lineno + 1


def function_lengths(path: Path) -> dict[str, int]:
    """``{qualified name: body lines}`` of every function and method in ``path``,
    nested ones included (``Outer.method.inner``)."""
    lengths = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    lengths[name] = body_lines(child)
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(), filename=str(path)), "")
    return lengths


def test_the_length_measure_skips_the_docstring_and_counts_nested_functions(tmp_path):
    source = tmp_path / "example.py"
    source.write_text(
        "class A:\n"
        "    def f(self):\n"
        '        """Doc\n\n        string."""\n'
        "        x = 1\n"
        "\n"
        "        def g():\n"
        "            return (\n"
        "                x\n"
        "            )\n"
        "        return g\n"
        "\n"
        "async def h():\n"
        '    """Only a docstring."""\n'
    )
    assert function_lengths(source) == {"A.f": 7, "A.f.g": 3, "h": 0}


def test_no_function_in_src_is_over_60_lines():
    too_long = [
        f"{path.relative_to(ROOT)}::{name} ({lines} lines)"
        for path in sorted(SRC.rglob("*.py"))
        for name, lines in function_lengths(path).items()
        if lines > MAX_FUNCTION_LINES
    ]
    assert too_long == [], (
        f"functions over {MAX_FUNCTION_LINES} lines (body without docstring), "
        "split them into named helpers:\n" + "\n".join(too_long)
    )
