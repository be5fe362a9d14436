"""The code's shape, held where CI runs without installing a linter: lines within the formatter's limit
(pyproject.toml's [tool.ruff] line-length) and library modules short enough to read top to bottom."""
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
SOURCES = sorted([*ROOT.glob("dcgan/*.py"), ROOT / "cli.py", *ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py"),
                  *ROOT.glob("scripts/*.py")])
MODULE_LINES = 420  # "about 400": a module past it is two modules


def test_no_line_is_longer_than_the_formatters_limit():
    limit = int(re.search(r"(?m)^line-length = (\d+)$", (ROOT / "pyproject.toml").read_text())[1])
    long = [f"{path.relative_to(ROOT)}:{number} ({len(line)})" for path in SOURCES
            for number, line in enumerate(path.read_text().splitlines(), 1) if len(line) > limit]
    assert not long, f"lines over {limit} characters: {', '.join(long)}"


def test_no_library_module_is_over_about_400_lines():
    long = {
        path.name: count
        for path in ROOT.glob("dcgan/*.py")
        if (count := len(path.read_text().splitlines())) > MODULE_LINES
    }
    assert not long, f"modules over {MODULE_LINES} lines: {long}"
