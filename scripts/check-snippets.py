#!/usr/bin/env python3
"""Checks that the C++ shown in the docs is code that is built and tested.

A ```cpp block preceded by a line `<!-- snippet: <path> -->` must be an excerpt
of that file (relative to the repository root): its lines, leading and
trailing spaces aside, appear in the file in the same order. A line that is
`...` or starts with `... ` stands for omitted code. The files named are built
by the test suite (examples/ by the build, out of tree by the sdk test), so a
snippet that passes here compiles.

  python3 scripts/check-snippets.py            # README.md and docs/*.md
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
MARKER = re.compile(r"<!--\s*snippet:\s*(\S+)\s*-->")


def blocks(text):
    """Yields (line number, path, [code lines]) for every marked cpp block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = MARKER.search(lines[i])
        if m and i + 1 < len(lines) and lines[i + 1].strip().startswith("```cpp"):
            start = i + 2
            end = start
            while end < len(lines) and not lines[end].strip().startswith("```"):
                end += 1
            yield i + 1, m.group(1), lines[start:end]
            i = end
        i += 1


def check(doc):
    problems, count = [], 0
    for line_no, path, code in blocks(doc.read_text()):
        count += 1
        source = ROOT / path
        if not source.is_file():
            problems.append(f"{doc.relative_to(ROOT)}:{line_no}: snippet names {path}, which does not exist")
            continue
        file_lines = [l.strip() for l in source.read_text().splitlines()]
        at = 0
        for k, raw in enumerate(code):
            want = raw.strip()
            if not want or want == "..." or want.startswith("... "):
                continue
            try:
                at = file_lines.index(want, at) + 1
            except ValueError:
                problems.append(
                    f"{doc.relative_to(ROOT)}:{line_no + 2 + k}: this line of the snippet is not in "
                    f"{path} (after what came before it): {want!r}\n"
                    f"  make the snippet an excerpt of the file again (copy it from {path})")
                break
    return problems, count


def main():
    docs = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
    problems, total = [], 0
    for doc in docs:
        p, n = check(doc)
        problems += p
        total += n
    for p in problems:
        print(p)
    if total == 0:
        print("no marked snippets found: expected at least the README's")
        return 1
    print(f"{total} snippets checked, {len(problems)} out of date")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
