"""Extract FOCUS column definitions from the specification's own Markdown into JSON test data.

Reads `specification/columns/*.md` at one tag of a clone of
https://github.com/FinOps-Open-Cost-and-Usage-Spec/FOCUS_Spec (through `git show`, so a bare
clone will do) and writes, per column: its Column ID, feature level (Mandatory, Recommended,
Conditional), column type, data type, whether it allows nulls, value format, allowed values and
the version that introduced it. The conformance test (`test_focus_conformance.py`) reads the
result. Regenerate with:

    python -m pulse_pipeline_dev.focus_spec /path/to/FOCUS_Spec v1.2 \
        > pulse_pipeline_tests/data/focus_1_2_columns.json
"""

import argparse
import json
import re
import subprocess
import sys
from typing import Any

REPOSITORY = "https://github.com/FinOps-Open-Cost-and-Usage-Spec/FOCUS_Spec"
COLUMNS_DIR = "specification/columns"
_ROW = re.compile(r"^\|(.*)\|\s*$")
_SEPARATOR = re.compile(r"^\|[\s:|-]+\|\s*$")


def _git(spec_repo: str, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", spec_repo, *args], check=True, capture_output=True, text=True
    ).stdout


def _sections(markdown: str) -> dict[str, list[str]]:
    """The lines under each `## Heading`, by lower-case heading."""
    sections: dict[str, list[str]] = {}
    current = "_intro"
    for line in markdown.splitlines():
        if line.startswith("## "):
            current = line[3:].strip().lower()
            sections[current] = []
        else:
            sections.setdefault(current, []).append(line)
    return sections


def _tables(lines: list[str]) -> list[list[list[str]]]:
    """Every Markdown table in the lines, as rows of cells (header first, separator dropped)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*lines, ""]:
        match = _ROW.match(line.strip())
        if match is None:
            if current:
                tables.append(current)
                current = []
            continue
        if not _SEPARATOR.match(line.strip()):
            current.append([cell.strip() for cell in match.group(1).split("|")])
    return tables


def _plain(text: str) -> str:
    """A cell without Markdown emphasis, links or escapes: `\\<not specified>` -> `<not specified>`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return text.replace("\\<", "<").replace("*", "").strip()


def column_definition(markdown: str, source: str) -> dict[str, Any]:
    """One column's definition from its Markdown file."""
    sections = _sections(markdown)
    column_id = next(line.strip() for line in sections["column id"] if line.strip())
    constraints_heading = next(name for name in sections if name.startswith("content constraint"))
    constraint_tables = _tables(sections[constraints_heading])
    constraints = {
        _plain(row[0]).lower(): _plain(row[1]) for row in constraint_tables[0][1:] if len(row) >= 2
    }
    allowed: list[Any] | None = None
    if constraints.get("value format", "").lower() == "allowed values":
        header, *rows = constraint_tables[1]  # the table that follows "Allowed values:"
        if [cell.lower() for cell in header[:2]] == ["service category", "service subcategory"]:
            allowed = [{"parent": _plain(row[0]), "value": _plain(row[1])} for row in rows]
        else:
            allowed = [_plain(row[0]) for row in rows]
    introduced = next(
        (line.strip() for line in sections.get("introduced (version)", []) if line.strip()), None
    )
    return {
        "id": column_id,
        "source": source,
        "column_type": constraints.get("column type"),
        "feature_level": constraints["feature level"],
        "allows_nulls": constraints["allows nulls"].lower() == "true",
        "data_type": constraints["data type"],
        "value_format": constraints.get("value format"),
        "allowed_values": allowed,
        "introduced": introduced,
    }


def extract(spec_repo: str, tag: str) -> dict[str, Any]:
    """Every column definition of the specification at `tag`, with where it came from."""
    commit = _git(spec_repo, "rev-parse", f"{tag}^{{commit}}").strip()
    names = _git(spec_repo, "ls-tree", "--name-only", f"{commit}:{COLUMNS_DIR}").split()
    columns = [
        column_definition(_git(spec_repo, "show", f"{commit}:{COLUMNS_DIR}/{name}"), name)
        for name in sorted(names)
        if name.endswith(".md")
    ]
    return {
        "focus_version": tag.removeprefix("v"),
        "source": {
            "repository": REPOSITORY,
            "tag": tag,
            "commit": commit,
            "path": COLUMNS_DIR,
        },
        "generated_by": f"python -m pulse_pipeline_dev.focus_spec <FOCUS_Spec clone> {tag}",
        "columns": sorted(columns, key=lambda column: column["id"]),
    }


def main(argv: list[str] | None = None) -> None:
    """Print the column definitions of FOCUS_Spec at the tag as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("spec_repo", help="a clone (bare or not) of FOCUS_Spec")
    parser.add_argument("tag", nargs="?", default="v1.2")
    args = parser.parse_args(argv)
    json.dump(extract(args.spec_repo, args.tag), sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
