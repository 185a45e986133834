"""Refresh the outputs stored in the source notebooks: the ones nbval compares.

Re-executes `notebooks/NN_*.ipynb` with their default (smoke) parameters and keeps, in each, only
the outputs of the cells marked `# NBVAL_CHECK_OUTPUT` (with execution counts 1, 2, ... in order);
every other output, execution count and all execution metadata are dropped. When and how to run it:
docs/notebooks.md.

    python -m vslrepro reproduce --profile smoke          # first: smoke data, runs and results
    python tools/refresh_notebook_outputs.py              # every notebook, in place
    python tools/refresh_notebook_outputs.py 04 05_tables # some notebooks (number, stem or file name)
    python tools/refresh_notebook_outputs.py --out DIR    # refreshed copies in DIR; sources untouched
    python -m pytest notebooks                            # then: nbval passes; review `git diff notebooks`

The notebooks read and write `results/smoke/` and the cache like the pipeline does
(`$VSLREPRO_RESULTS`, `$VSLREPRO_CACHE` when set). A checked output that shows something varying
across machines is refused, and nothing is written for that notebook: an error, text on stderr
(warnings, progress bars), or text that a sanitizer of `notebooks/sanitize.cfg` would change
(timings, memory addresses, absolute paths). Such a cell should print less, or be marked
`# NBVAL_IGNORE_OUTPUT`.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
SANITIZE = NOTEBOOKS / "sanitize.cfg"
CHECK = "# NBVAL_CHECK_OUTPUT"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def is_checked(cell: nbformat.NotebookNode) -> bool:
    """A code cell whose outputs nbval compares (`# NBVAL_CHECK_OUTPUT` on a line of its own)."""
    return cell.cell_type == "code" and any(line.strip() == CHECK for line in cell.source.splitlines())


def sanitize_patterns(path: Path = SANITIZE) -> list[tuple[str, str]]:
    """The (regex, replacement) pairs of an nbval sanitize file, read as nbval reads them."""
    return re.findall(r"^regex: (.*)$\n^replace: (.*)$", path.read_text(), flags=re.MULTILINE)


def sanitize(text: str, patterns: list[tuple[str, str]]) -> str:
    for regex, replace in patterns:
        text = re.sub(regex, replace, text)
    return text


def output_texts(output: nbformat.NotebookNode) -> list[str]:
    """The text nbval compares in one output: a stream's text or every textual MIME bundle."""
    if output.get("output_type") == "stream":
        return [output.get("text", "")]
    data = output.get("data", {})
    return [value if isinstance(value, str) else "".join(value)
            for key, value in data.items() if key.startswith("text/")]


def problems(nb: nbformat.NotebookNode, patterns: list[tuple[str, str]]) -> list[str]:
    """Why the checked outputs of an executed notebook cannot be stored (empty when they can)."""
    found = []
    for number, cell in enumerate(nb.cells):
        if not is_checked(cell):
            continue
        if not cell.get("outputs"):
            found.append(f"cell {number}: marked {CHECK} but shows nothing")
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            if kind == "error" or (kind == "stream" and output.get("name") == "stderr"):
                found.append(f"cell {number}: {kind} output ({output.get('name', output.get('ename'))})")
                continue
            for text in output_texts(output):
                if sanitize(text, patterns) != text:
                    found.append(f"cell {number}: shows text that varies across machines "
                                 f"(changed by {SANITIZE.name}): {text[:200]!r}")
    return found


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Keep only checked outputs (numbered 1, 2, ...), cell tags and the kernelspec."""
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    count = 0
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        cell.metadata = {"tags": tags} if tags else {}
        if cell.cell_type != "code":
            continue
        if is_checked(cell):
            count += 1
            cell.execution_count = count
            for output in cell.outputs:
                if "metadata" in output:
                    output["metadata"] = {}
                if "execution_count" in output:
                    output["execution_count"] = count
        else:
            cell.outputs = []
            cell.execution_count = None
    return nb


def select(names: list[str]) -> list[Path]:
    """Source notebooks by number ("05"), stem ("05_tables", "ezvsl") or file name; all when none
    given: the pipeline notebooks, then the method notebooks under `notebooks/methods/`."""
    every = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")) + sorted(NOTEBOOKS.glob("methods/*.ipynb"))
    if not names:
        return every
    chosen = []
    for name in names:
        match = [p for p in every if name in (p.name, p.stem, p.name[:2])]
        if not match:
            raise SystemExit(f"no notebook {name!r} in {NOTEBOOKS}; there are {[p.name for p in every]}")
        chosen += [p for p in match if p not in chosen]
    return chosen


def refresh(path: Path, out: Path, patterns: list[tuple[str, str]]) -> list[str]:
    """Execute one source notebook and write its cleaned copy to `out` (unless it has problems)."""
    import papermill

    try:
        executed = papermill.execute_notebook(str(path), None, cwd=str(path.parent), kernel_name="python3",
                                              progress_bar=False, log_output=False)
    except papermill.PapermillExecutionError as error:
        return [f"cell {error.cell_index}: {error.ename}: {error.evalue}"]
    # papermill injects a parameters cell only when parameters are given: none here
    found = problems(executed, patterns)
    if not found:
        nbformat.write(clean(executed), out)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="numbers, stems or file names (default: all)")
    parser.add_argument("--out", type=Path, help="write refreshed copies here instead of in place")
    args = parser.parse_args(argv)
    patterns = sanitize_patterns()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in select(args.notebooks):
        target = (args.out / path.relative_to(NOTEBOOKS)) if args.out else path
        target.parent.mkdir(parents=True, exist_ok=True)
        found = refresh(path, target, patterns)
        if found:
            failed += 1
            print(f"NOT refreshed {path.name}:\n  " + "\n  ".join(found), file=sys.stderr)
        else:
            print(f"refreshed {path.name} -> {target}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
