"""The README and docs/ follow the repository: its files, its make targets, its links.

Each test names what drifted: the missing file, the unknown target, the broken link.
"""

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
LAYOUT = ROOT / "docs" / "layout.md"  # the file map
MARKDOWN = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 170
# Every module here is named in docs/layout.md's tables.
SOURCE_FOLDERS = ["src/sagevit", "serve/sagevit_serve", "scripts"]

FENCE = re.compile(r"^```.*?^```", flags=re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HELP_TARGET = re.compile(r"^([a-z-]+):.*## ", flags=re.MULTILINE)  # what `make help` lists
ANY_TARGET = re.compile(r"^([A-Za-z0-9_.-]+):(?!=)", flags=re.MULTILINE)
MAKE_CALL = re.compile(r"(?:^|&&|;|\|)\s*make(?=[ \t])")  # a command, not `apt-get install make`


def section(text: str, heading: str) -> str:
    """The text under `## heading`, up to the next heading of that level."""
    match = re.search(
        rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL
    )
    assert match, f"README has no '## {heading}' section"
    return match.group(1)


def first_column(text: str) -> list[str]:
    """The first cell of every body row of the tables in `text` (header and rule skipped)."""
    lines = text.splitlines()
    rule = re.compile(r"^\|[-:| ]+\|$")
    cells = []
    for i, line in enumerate(lines):
        is_header = i + 1 < len(lines) and rule.match(lines[i + 1])
        if line.startswith("|") and not rule.match(line) and not is_header:
            cells.append(line.strip("|").split("|")[0].strip())
    return cells


def layout_paths() -> list[str]:
    cells = first_column(LAYOUT.read_text())
    paths = [path for cell in cells for path in CODE_SPAN.findall(cell)]
    assert len(paths) > 20, f"docs/layout.md names only {paths}"
    return paths


def makefile_targets() -> tuple[set[str], set[str]]:
    """(every target the Makefile defines, the ones `make help` lists)."""
    text = (ROOT / "Makefile").read_text()
    return set(ANY_TARGET.findall(text)), set(HELP_TARGET.findall(text))


def make_calls(text: str) -> set[str]:
    """Targets named in `make ...` commands inside code blocks and code spans of `text`."""
    code = FENCE.findall(text) + CODE_SPAN.findall(FENCE.sub("", text))
    targets = set()
    for line in "\n".join(code).splitlines():
        for match in MAKE_CALL.finditer(line):
            for word in line[match.end() :].split():
                if word.startswith("-") or "=" in word:
                    continue  # a flag (make -s) or a variable (EPOCHS=10)
                if not re.fullmatch(r"[a-z][a-z0-9-]*", word):
                    break  # the command ends: a comment, a pipe, prose
                targets.add(word)
    return targets


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


def test_every_path_in_the_layout_table_exists():
    missing = [path for path in layout_paths() if not (ROOT / path).exists()]
    assert not missing, f"docs/layout.md names paths that do not exist: {missing}"
    not_folders = [p for p in layout_paths() if p.endswith("/") and not (ROOT / p).is_dir()]
    assert not not_folders, f"docs/layout.md names these as folders: {not_folders}"


def test_every_source_module_is_in_the_layout_table():
    listed = set(layout_paths())
    modules = [
        path.relative_to(ROOT).as_posix()
        for folder in SOURCE_FOLDERS
        for path in sorted((ROOT / folder).rglob("*"))  # the wings' modules too
        if path.suffix in (".py", ".sh") and path.name != "__init__.py"
    ]
    assert len(modules) > 20
    unlisted = [module for module in modules if module not in listed]
    assert not unlisted, f"docs/layout.md lacks: {unlisted}"


def test_every_make_target_the_docs_name_exists():
    defined, _ = makefile_targets()
    unknown = {
        f"{path.relative_to(ROOT)}: make {target}"
        for path in MARKDOWN
        for target in make_calls(path.read_text())
        if target not in defined
    }
    assert not unknown, f"make targets the Makefile does not define: {sorted(unknown)}"


def test_the_readme_targets_table_is_make_help():
    defined, listed_by_help = makefile_targets()
    cells = first_column(section(README.read_text(), "Make targets"))
    in_table = {cell.strip("`").removeprefix("make ") for cell in cells}
    assert in_table, "README's targets table is empty"
    absent = sorted(listed_by_help - in_table)
    assert not absent, f"`make help` lists targets README's targets table lacks: {absent}"
    unknown = sorted(in_table - defined)
    assert not unknown, f"README's targets table names targets the Makefile lacks: {unknown}"


def test_every_relative_link_points_to_an_existing_file_and_heading():
    broken = []
    for path in MARKDOWN:
        for target in LINK.findall(FENCE.sub("", path.read_text())):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            where = f"{path.relative_to(ROOT)} -> {target}"
            if not linked.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{where} (no such heading)")
    assert not broken, f"broken links: {broken}"


def test_the_readme_stays_short():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, (
        f"README.md has {lines} lines (at most {MAX_README_LINES}): move reference to docs/"
    )


def test_ci_runs_the_readme_quickstart_commands():
    """`.ci/run` runs the README's commands: the quickstart's must be among them."""
    quickstart = "\n".join(FENCE.findall(section(README.read_text(), "Quickstart")))
    commands = re.findall(r"^make ([a-z-]+)", quickstart, flags=re.MULTILINE)
    assert "test" in commands, "README's quickstart lost `make test`"
    ci = (ROOT / ".ci/run").read_text()
    not_run = [c for c in commands if not re.search(rf"^\s*(?:\S+=\S+\s+)?make {c}$", ci, re.M)]
    assert not not_run, f".ci/run does not run the quickstart's: {not_run}"
