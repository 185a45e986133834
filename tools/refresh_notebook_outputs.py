"""Re-execute the source notebooks with their default (smoke) parameters and keep, in the committed
sources, only the outputs that nbval checks (cells marked `# NBVAL_CHECK_OUTPUT`).

    python tools/refresh_notebook_outputs.py          # after `python -m vslrepro reproduce --profile smoke`

The executed copies with every output are the pipeline's results under results/<profile>/notebooks/.
"""

from pathlib import Path

import nbformat
import papermill

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop papermill/execution metadata and every output nbval does not check."""
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        cell.metadata = {"tags": tags} if tags else {}
        if cell.cell_type != "code":
            continue
        if "NBVAL_CHECK_OUTPUT" not in cell.source:
            cell.outputs = []
            cell.execution_count = None  # nbval needs the count only where it compares outputs
        for output in cell.outputs:
            if "metadata" in output:
                output["metadata"] = {}
    return nb


def main() -> None:
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        executed = papermill.execute_notebook(str(path), None, cwd=str(NOTEBOOKS), kernel_name="python3",
                                              progress_bar=False)
        # papermill inserts an "injected-parameters" cell only when parameters are given: none here
        nbformat.write(clean(executed), path)
        print("refreshed", path.name)


if __name__ == "__main__":
    main()
