"""The README is a short front door and the documentation site is complete and neutral.

README.md stays within 200 lines and its links reach pages that exist; README and
docs/ have no first-person sentences and no development diary (outside code); every
page of docs/ is in the site's navigation; the configuration reference that the site
generates lists every key of ``params.yaml``. ``.ci/run`` builds the site itself with
``mkdocs build --strict`` (broken links, missing pages and docstring warnings fail).
"""

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_MAX_LINES = 200

#: First-person words (``I`` only as a capital, the others in any case).
FIRST_PERSON = re.compile(r"\bI\b|\b(?:we|our|ours|us|my|me|myself|ourselves)\b", re.I)
#: A lab notebook's phrases: how something was found rather than what holds.
DIARY = re.compile(
    r"has not been rerun|not been rerun since|was found|were found|"
    r"in the (?:previous|last|earlier) session|turned out|so far in this project",
    re.I,
)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def prose(text: str) -> str:
    """The text a reader reads as sentences: without fenced code, inline code, HTML
    comments and link targets."""
    text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.M | re.S)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"(`+).+?\1", "", text, flags=re.S)
    return re.sub(r"\]\([^)]*\)", "]", text)


def first_person_lines(text: str) -> list[str]:
    return [
        line for line in prose(text).splitlines() if FIRST_PERSON.search(line.replace("I/O", ""))
    ]


def test_the_prose_filter_finds_first_person_outside_code_only():
    text = "We trained it.\n`we` in code\n```\nwe = 1\n```\nSee [x](ours.md).\n"
    assert first_person_lines(text) == ["We trained it."]
    assert first_person_lines("Our results and mine: fine.\n") != []
    assert first_person_lines("It is the user's run; `dataset[i]` and I/O.\n") == []


def test_the_readme_is_a_short_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


@pytest.mark.parametrize("page", pages(), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_first_person_or_diary_in_readme_and_docs(page):
    text = page.read_text()
    assert first_person_lines(text) == [], f"{page.name}: first person in prose"
    diary = [line for line in prose(text).splitlines() if DIARY.search(line)]
    assert diary == [], f"{page.name}: development diary; say what holds instead"


def relative_links(text: str) -> list[str]:
    targets = re.findall(r"\]\(([^)\s]+)\)", prose_links_only(text))
    return [t for t in targets if not re.match(r"[a-z]+:|#", t)]


def prose_links_only(text: str) -> str:
    return re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.M | re.S)


def test_the_readme_links_reach_files_that_exist():
    links = relative_links((ROOT / "README.md").read_text())
    assert any(link.startswith("docs/") for link in links)
    missing = [link for link in links if not (ROOT / link.split("#")[0]).exists()]
    assert missing == []


def test_the_links_between_docs_pages_reach_files_that_exist():
    for page in DOCS.rglob("*.md"):
        for link in relative_links(page.read_text()):
            target = (page.parent / link.split("#")[0]).resolve()
            assert target.exists(), f"{page.relative_to(ROOT)} links to a missing {link}"


def test_every_docs_page_is_in_the_site_navigation():
    nav = (ROOT / "mkdocs.yml").read_text().split("\nnav:", 1)[1]
    listed = set(re.findall(r"([\w/-]+\.md)\s*$", nav, re.M))
    on_disk = {str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md")}
    assert on_disk == listed


def load_hook():
    path = DOCS / "hooks" / "config_reference.py"
    spec = importlib.util.spec_from_file_location("config_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flat_keys(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict) and key not in ("split", "space", "activation_kwargs"):
            yield from flat_keys(value, f"{prefix}{key}.")
        elif not (isinstance(value, dict) and key in ("launcher_settings",)):
            yield prefix + key


def test_the_configuration_reference_lists_every_key_of_params_yaml():
    reference = load_hook().config_reference()
    listed = set(re.findall(r"^\| `([\w.]+)` \|", reference, re.M))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    missing = set(flat_keys(params)) - listed
    assert missing == set(), f"keys of params.yaml missing from the reference: {missing}"
    for group in ("data", "model", "optimizer", "solver", "tune", "evaluate"):
        assert f"### `{group}`" in reference
    assert "`optimizer=sgd_momentum`" in reference  # every optimizer's own fields


def test_the_configuration_page_carries_the_generated_reference():
    hook = load_hook()
    page = (DOCS / "configuration.md").read_text()
    assert hook.MARKER in page
    rendered = hook.on_page_markdown(page)
    assert hook.MARKER not in rendered and "| `solver.epochs` |" in rendered


def test_sphinx_roles_in_docstrings_become_plain_code_in_the_site():
    spec = importlib.util.spec_from_file_location("roles", DOCS / "hooks" / "sphinx_roles.py")
    roles = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(roles)
    html = "see :func:<code>~npdl.io.save_json</code> and :class:<code>Solver</code>"
    assert (
        roles.on_page_content(html) == "see <code>npdl.io.save_json</code> and <code>Solver</code>"
    )


def test_the_architecture_page_names_every_module_of_the_library():
    page = (DOCS / "architecture.md").read_text()
    modules = sorted((ROOT / "src" / "npdl").rglob("*.py"))
    missing = [m.name for m in modules if m.name != "__init__.py" and m.name not in page]
    assert missing == [], f"docs/architecture.md's map lacks {missing}"
