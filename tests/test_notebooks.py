"""The pipeline notebooks: their anatomy, their stored outputs and what nbval really compares.

Policy: trained rows (EZ-VSL, EZ-VSL + OGL, ...) are pinned within a tolerance by pytest on the
per-sample results in tests/test_pipeline.py; nbval compares the deterministic outputs (Table 1
counts, the random-map and centre-prior rows) exactly, as printed, and shows trained rows only in
cells marked `# NBVAL_IGNORE_OUTPUT`.

The `.ipynb` files are their own source (docs/notebooks.md): these tests check the rules a maintainer
follows when editing them, that `notebooks/sanitize.cfg` masks nothing but machine-dependent text,
and that nbval fails when a stored reference number is changed.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
METHOD_NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("methods/*.ipynb"))
ALL_NOTEBOOKS = NOTEBOOKS + METHOD_NOTEBOOKS
SANITIZE = NOTEBOOK_DIR / "sanitize.cfg"
CHECK, IGNORE = "# NBVAL_CHECK_OUTPUT", "# NBVAL_IGNORE_OUTPUT"
MAX_LINES, MAX_MEDIAN_LINES = 25, 8
PARAMETER = re.compile(r"^(?P<name>[A-Za-z_]\w*): (?P<type>str|int|float|bool) = (?P<value>.+?)  # \S.*$")
# citations of design notes that live outside the repo (spelled in pieces so that a grep of the
# repo for them finds none)
STALE = ("design " + "§", "design" + ".md", "methods" + ".md", "../" + "shared")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
REFRESH = "run `python tools/refresh_notebook_outputs.py` (docs/notebooks.md)"


def markers(cell) -> set[str]:
    return {line.strip() for line in cell.source.splitlines()} & {CHECK, IGNORE}


def checked(cell) -> bool:
    return cell.cell_type == "code" and CHECK in markers(cell)


def output_texts(output) -> list[str]:
    """What nbval compares in one output: a stream's text, or each textual MIME bundle."""
    if output.get("output_type") == "stream":
        return [output.get("text", "")]
    return [value if isinstance(value, str) else "".join(value)
            for key, value in output.get("data", {}).items() if key.startswith("text/")]


def sanitize_patterns() -> list[tuple[str, str]]:
    """The sanitize file's (regex, replacement) pairs, parsed exactly as nbval parses them."""
    from nbval.plugin import get_sanitize_patterns

    return get_sanitize_patterns(SANITIZE.read_text())


def sanitize(text: str) -> str:
    for regex, replace in sanitize_patterns():
        text = re.sub(regex, replace, text)
    return text


def stored_checked_texts() -> list[tuple[str, int, str]]:
    """(notebook, cell number, text) of every stored output of a checked cell."""
    found = []
    for path in NOTEBOOKS:
        for number, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if checked(cell):
                found += [(path.name, number, text) for out in cell.outputs for text in output_texts(out)]
    return found


# ------------------------------------------------------------------------------- anatomy

def check_parameters_and_setup(code: list) -> None:
    """The first code cell is the `parameters`-tagged one, of annotated literals; the setup follows."""
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and code[0] is tagged[0], "one `parameters`-tagged cell, the first code cell"
    for line in tagged[0].source.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            match = PARAMETER.match(line)
            assert match, f"parameter line {line!r} is not `name: type = literal  # comment`"
            value = ast.literal_eval(match["value"])
            assert type(value).__name__ == match["type"], f"{line!r}: the literal is not a {match['type']}"
    assert "stages.resolve(profile)" in code[1].source, "the setup cell follows the parameters"


def test_the_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS][:6] == ["00_data.ipynb", "01_testsets.ipynb", "02_object_prior.ipynb",
                                               "03_train.ipynb", "04_evaluate.ipynb", "05_tables.ipynb"]
    assert not (REPO / "tools" / "make_notebooks.py").exists(), "the .ipynb files are the source"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_anatomy(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    cells = nb.cells
    # title, then one line naming the paper artefact
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), "first cell: a `# ` title"
    assert "**Paper artefact:**" in cells[0].source, "the title cell names the paper artefact"
    # the parameters cell (first code cell) and the setup cell right after it
    code = [c for c in cells if c.cell_type == "code"]
    check_parameters_and_setup(code)
    # H2 sections with prose, one of them the results
    sections = [c.source for c in cells if c.cell_type == "markdown" and c.source.startswith("## ")]
    assert any(s.startswith("## Results") for s in sections), "a `## Results` section"
    for section in sections:
        assert len([line for line in section.splitlines() if line.strip()]) > 1, \
            f"section {section.splitlines()[0]!r} has no prose"
    # short cells: none over 25 lines, median of the code cells at most 8
    for number, cell in enumerate(cells):
        assert len(cell.source.splitlines()) <= MAX_LINES, f"cell {number} is over {MAX_LINES} lines"
    assert statistics.median(len(c.source.splitlines()) for c in code) <= MAX_MEDIAN_LINES
    # every cell after the setup says whether nbval compares it
    for cell in code[2:]:
        assert len(markers(cell)) == 1, f"mark the cell as {CHECK} or {IGNORE}:\n{cell.source}"


def test_every_trained_method_has_a_teaching_notebook():
    from vslrepro.methods import METHODS, method_class

    # the package's own methods (test files register toy plug-ins of their own in the same session)
    packaged = [name for name in METHODS if method_class(name).__module__.startswith("vslrepro.methods.")]
    own_runs = sorted(name for name in packaged if method_class(name).run_method() == name)
    assert "ezvsl" in own_runs
    assert [p.stem for p in METHOD_NOTEBOOKS] == own_runs


@pytest.mark.parametrize("path", METHOD_NOTEBOOKS, ids=lambda p: p.name)
def test_teaching_notebook_anatomy(path):
    """d2l's anatomy: title and motivation, parameters, short steps each ending in a result,
    a summary and exercises; every cell after the setup marked for nbval."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), "first cell: a `# ` title"
    assert "**Method:**" in cells[0].source, "the title cell names the method, its paper and its code"
    assert len(cells[0].source.split("\n\n")) >= 3, "the title cell motivates the method in a few paragraphs"
    code = [c for c in cells if c.cell_type == "code"]
    check_parameters_and_setup(code)
    assert {"profile", "dataset"} <= {m["name"] for m in map(PARAMETER.match, code[0].source.splitlines()) if m}
    sections = [c.source.splitlines()[0] for c in cells if c.cell_type == "markdown" and c.source.startswith("## ")]
    assert sections[-2:] == ["## Summary", "## Exercises"], sections
    assert len(sections) >= 6, "the method is taken apart in several steps"
    assert "$$" in "".join(c.source for c in cells if c.cell_type == "markdown"), "the equations are written out"
    for number, cell in enumerate(cells):
        assert len(cell.source.splitlines()) <= MAX_LINES, f"cell {number} is over {MAX_LINES} lines"
    assert statistics.median(len(c.source.splitlines()) for c in code) <= MAX_MEDIAN_LINES
    for cell in code[2:]:
        assert len(markers(cell)) == 1, f"mark the cell as {CHECK} or {IGNORE}:\n{cell.source}"
        last = ast.parse(cell.source).body[-1]
        assert isinstance(last, ast.Expr), f"a step ends in a result (an expression or a print):\n{cell.source}"
    sources = "\n".join(c.source for c in code)
    assert "teaching.trained_model(" in sources and "teaching.maps_figure(" in sources, \
        "a trained model's maps are shown beside the ground truth"
    assert "teaching.shapes(" in sources, "the shapes are printed"
    assert sum(checked(c) for c in code) >= 3, "nbval checks the deterministic steps"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_only_on_checked_cells(path):
    """Stored outputs are exactly what nbval compares: checked cells have them, no other cell does."""
    for number, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type != "code":
            continue
        if checked(cell):
            assert cell.outputs, f"{path.name} cell {number} is checked but stores no output: {REFRESH}"
            for output in cell.outputs:
                assert output.output_type != "error" and output.get("name") != "stderr", \
                    f"{path.name} cell {number} stores an error or stderr (warnings) output"
        else:
            assert not cell.outputs and cell.execution_count is None, \
                f"{path.name} cell {number} is not checked but stores outputs: {REFRESH}"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_no_references_to_files_a_user_lacks(path):
    for number, cell in enumerate(nbformat.read(path, as_version=4).cells):
        for stale in STALE:
            assert stale not in cell.source, f"{path.name} cell {number} mentions {stale!r}"
        if cell.cell_type == "markdown":
            for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", cell.source):
                if not re.match(r"[a-z]+://", target):
                    assert (path.parent / target).exists(), f"{path.name} cell {number}: dead link {target}"


# ------------------------------------------------------------------------------- sanitizers

def test_sanitizers_keep_numbers():
    """No blanket float regex: the numbers a checked cell prints survive sanitizing unchanged."""
    printed = ["0.177", "25.30", "-0.5", "1e-05", "{'flickr': 192, 'vggss': 192}", "<td>55.21</td>",
               "Random map      4.17       4.17", "4 epochs; BEST epoch 4; val LocAcc best 0.203",
               "Extended VGG-SS / max-F1", "locacc  auc  ap  max_f1"]
    for text in printed:
        assert sanitize(text) == text
    # and each sanitizer still masks what varies across machines
    for varying in ("done in 12.3 s", "<Figure at 0x7f3a2b1c9d00>", "/home/someone/vslrepro/results/smoke/x.csv"):
        assert sanitize(varying) != varying, varying


def test_sanitizers_leave_the_stored_outputs_alone():
    """Checked outputs show nothing machine-dependent, so sanitizing them changes no digit at all."""
    texts = stored_checked_texts()
    numbers = [n for _, _, text in texts for n in NUMBER.findall(text) if "." in n]
    assert numbers, f"no stored decimal number in any checked cell: {REFRESH}"
    for name, number, text in texts:
        assert NUMBER.findall(sanitize(text)) == NUMBER.findall(text), f"{name} cell {number}"
        assert sanitize(text) == text, f"{name} cell {number}: a checked cell shows machine-dependent text"


# ------------------------------------------------------------------------------- nbval compares numbers

def mutate_first_number(cell, needle: str) -> str:
    """Change the last digit of the first 2-decimal number in a checked cell's text outputs."""
    plain = next(o for o in cell.outputs if "text/plain" in o.get("data", {}))["data"]["text/plain"]
    assert needle in plain, plain
    number = re.search(r"\d+\.\d\d\b", plain)[0]
    changed = number[:-1] + str((int(number[-1]) + 1) % 10)
    for output in cell.outputs:
        for key, value in output.get("data", {}).items():
            if key.startswith("text/"):
                output["data"][key] = value.replace(number, changed, 1)
    return f"{number} -> {changed}"


def test_nbval_fails_on_a_changed_reference_number(tmp_path):
    """A LocAcc (Table 2) and an AP (Table 3) of the reference rows, changed by one digit in a copy of
    05_tables.ipynb, make nbval fail on exactly those two cells; the unchanged copy passes."""
    samples = REPO / "results" / "smoke" / "samples"
    assert any(samples.glob("*_center_none.csv")), f"the committed smoke results are missing: {samples}"
    shutil.copytree(samples, tmp_path / "results" / "smoke" / "samples")
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = nbformat.read(NOTEBOOK_DIR / "05_tables.ipynb", as_version=4)
    nbformat.write(nb, folder / "a_unchanged.ipynb")
    targets = {}  # nbval's "Cell N" counts code cells only
    for number, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        plain = "".join(o.get("data", {}).get("text/plain", "") for o in cell.outputs) if checked(cell) else ""
        if "Random map" in plain and ("Early Stop" in plain or "AP" in plain):
            targets[number] = mutate_first_number(cell, "Centre prior")
    assert len(targets) == 2, f"expected the checked Table 2 and Table 3 reference rows: {REFRESH}"
    nbformat.write(nb, folder / "b_changed.ipynb")

    report = tmp_path / "report.xml"
    command = [sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider", "-q",
               "--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE),
               f"--junitxml={report}", str(folder)]
    env = {**os.environ, "VSLREPRO_RESULTS": str(tmp_path / "results")}
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    failed = {}  # "<file>::Cell N" -> failure text
    for case in ET.parse(report).iter("testcase"):
        for problem in (case.find("failure"), case.find("error")):
            if problem is not None:
                key = f"{case.get('classname', '')}::{case.get('name', '')}"
                failed[key] = (problem.get("message") or "") + (problem.text or "")
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-2000:]
    assert not [k for k in failed if "a_unchanged" in k], f"the unchanged copy fails:\n{run.stdout[-3000:]}"
    changed = sorted(int(re.search(r"Cell (\d+)", k)[1]) for k in failed if "b_changed" in k)
    assert changed == sorted(targets), (targets, json.dumps(sorted(failed)), run.stdout[-3000:])
    for key, text in failed.items():
        assert "Cell outputs differ" in text, f"{key} failed for another reason:\n{text[-2000:]}"
