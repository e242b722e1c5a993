"""The configuration reference, generated from the schema and ``conf/`` at build time.

A MkDocs hook (``mkdocs.yml``: ``hooks``): the marker ``<!-- config-reference -->`` in a
page becomes one table per config group, listing every key of the schema
(:class:`npdl.config.PipelineConfig`, with every optimizer's dataclass) with its default,
what it may be (the schema's declared constraints) and what it does (the comment above
the key in ``conf/``, else the ``#:`` comment above the field). The group's options are
the files of ``conf/<group>/``. ``python docs/hooks/config_reference.py`` prints the
same Markdown.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

from npdl import config as schema

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
MARKER = "<!-- config-reference -->"


def shown(value) -> str:
    """A default as YAML flow text, in a code span."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{key}: {shown(item)[1:-1]}" for key, item in value.items()) + "}"
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(shown(item)[1:-1] for item in value) + "]"
    else:
        text = str(value)
    return f"`{text}`"


def allowed(constraints) -> str:
    """The declared constraint(s) of one field, in words."""
    if constraints is None:
        return ""
    if not isinstance(constraints, tuple):
        constraints = (constraints,)
    words = []
    for constraint in constraints:
        try:
            words.append(constraint.describe())
        except (NotImplementedError, AttributeError):
            text = constraint._expected
            if isinstance(text, str):
                words.append(text)
            else:
                words.append("checked against other values")
    return "; ".join(words).replace("|", "\\|")


def field_comments(cls) -> dict[str, str]:
    """``#:`` comments above each field of ``cls`` and its bases."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        pending: list[str] = []
        for line in inspect.getsource(klass).splitlines():
            stripped = line.strip()
            if stripped.startswith("#:"):
                pending.append(stripped[2:].strip())
                continue
            match = re.match(r"(\w+)\s*:", stripped)
            if match and pending:
                comments[match.group(1)] = " ".join(pending)
            pending = []
    return comments


def yaml_comments(group: str) -> dict[str, str]:
    """Comments above each top-level key in ``conf/<group>/*.yaml`` (first file first)."""
    comments: dict[str, str] = {}
    folder = CONF / group
    paths = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    default = default_options().get(group)
    paths.sort(key=lambda path: path.stem != default)  # the default option's comments first
    for path in paths:
        pending: list[str] = []
        lines = path.read_text().splitlines()
        if path.stem != default:  # another option's opening comment describes the file
            lines = lines[len(header_lines(lines)) :]
        for line in lines:
            if line.startswith("#"):
                pending.append(line.lstrip("#").strip())
                continue
            match = re.match(r"(\w+)\s*:", line)
            if match and pending:
                comments.setdefault(match.group(1), " ".join(pending))
            pending = []
    return comments


def default_options() -> dict[str, str]:
    """``group -> option`` of ``conf/config.yaml``'s defaults list."""
    found = re.findall(r"^  - (\w+): (\w+)$", (CONF / "config.yaml").read_text(), re.M)
    return dict(found)


def plain(text: str) -> str:
    """Docstring text for Markdown: Sphinx roles (``:func:`x```) become code spans."""
    return re.sub(r":(?:func|mod|class|meth|attr|data):`", "`", text).replace("|", "\\|")


def rows(instance, prefix: str, group: str) -> list[str]:
    cls = type(instance)
    constraints = getattr(cls, "constraints", {})
    rules = {
        key: rule for table in schema.PipelineConfig.rules.values() for key, rule in table.items()
    }
    described = {**field_comments(cls), **yaml_comments(group)}
    lines = []
    for item in dataclasses.fields(instance):
        value = getattr(instance, item.name)
        if dataclasses.is_dataclass(value):
            continue
        key = prefix + item.name
        words = allowed(constraints.get(item.name))
        if key in rules:
            words = "; ".join(filter(None, [words, "checked against other keys"]))
        what = plain(described.get(item.name, ""))
        lines.append(f"| `{key}` | {shown(value)} | {words} | {what} |")
    return lines


def header_lines(lines: list[str]) -> list[str]:
    """The comment lines a YAML file opens with (Hydra's ``# @package`` line left out)."""
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    return [line for line in header if not line.startswith("# @package")]


def describes_the_file(path: Path, default: str | None) -> bool:
    """Whether the opening comment is about the file: in the group's default option, a
    comment directly above a key (not ``defaults``) is that key's instead."""
    rest = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    above_a_key = bool(rest) and bool(re.match(r"\w+\s*:", rest[0]))
    return path.stem != default or not above_a_key or rest[0].startswith("defaults")


def options(group: str, prefix: str = "") -> list[str]:
    """``- `group=name`: the first sentence of its opening comment`` per option file."""
    folder = CONF / group
    items = []
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        lines = header_lines(path.read_text().splitlines())
        if not describes_the_file(path, default_options().get(group)):
            lines = []
        header = " ".join(line.lstrip("#").strip() for line in lines)
        # The first sentence, without a command line that follows a colon.
        first = re.split(r"(?<=[.!?])\s|:\s+(?=python |dvc )", header, maxsplit=1)[0]
        default = " (the default)" if path.stem == default_options().get(group) else ""
        items.append(
            f"- `{prefix}{group}={path.stem}`{default}" + (f": {plain(first)}" if first else "")
        )
    return items


HEADER = ["| key | default | allowed | what it does |", "|---|---|---|---|"]


def config_reference() -> str:
    """Markdown: one table per group, every key of the schema."""
    config = schema.PipelineConfig()
    out = ["### Top-level keys", "", *HEADER, *rows(config, "", "."), ""]
    for item in dataclasses.fields(config):
        node = getattr(config, item.name)
        if not dataclasses.is_dataclass(node):
            continue
        group = item.name
        out += [f"### `{group}`", ""]
        doc = inspect.getdoc(type(node)) or ""
        if doc:
            out += [plain(doc.split("\n\n")[0].replace("\n", " ")), ""]
        if options(group):
            out += [f"Options (`conf/{group}/`):", "", *options(group), ""]
        if group == "optimizer":
            for name, cls in schema.OPTIMIZER_CONFIGS.items():
                out += [f"`optimizer={name}` (`{cls.__name__}`):", "", *HEADER]
                out += [*rows(cls(), "optimizer.", group), ""]
        else:
            out += [*HEADER, *rows(node, f"{group}.", group), ""]
    out += [
        "### `experiment`",
        "",
        "Recipes that override several groups at once (`conf/experiment/`):",
        "",
        *options("experiment", prefix="+"),
        "",
    ]
    return "\n".join(out)


def on_page_markdown(markdown: str, **kwargs) -> str:
    """MkDocs hook: replace the marker with the reference."""
    if MARKER in markdown:
        return markdown.replace(MARKER, config_reference())
    return markdown


if __name__ == "__main__":
    print(config_reference())
