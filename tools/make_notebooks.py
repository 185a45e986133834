"""Write the pipeline notebooks' sources (run once when their text changes; outputs are added by
`tools/refresh_notebook_outputs.py`). Kept so that a reviewer can read every cell in one file."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parents[1] / "notebooks"
CHECK = "# NBVAL_CHECK_OUTPUT\n"
IGNORE = "# NBVAL_IGNORE_OUTPUT\n"


def params_cell(text):
    cell = new_code_cell(text)
    cell.metadata["tags"] = ["parameters"]
    return cell


SETUP = """from IPython.display import Image, display
from vslrepro import stages
from vslrepro.seeding import seed_everything

params = stages.resolve(profile)
seed_everything(params["seed"])
print(f"profile {params['profile']}: data {params['data']['source']}, backbone {params['model']['backbone']}")"""

NOTEBOOKS = {
    "00_data.ipynb": [
        new_markdown_cell("# 00 · Data\n\nThe benchmark every later notebook reads (design §4): the embedded "
                          "synthetic benchmark for `smoke`/`quick`, generated once in the community's layout, "
                          "or a check that the real Flickr-SoundNet / VGG-Sound roots of `paper` exist."),
        params_cell('profile: str = "smoke"  # params/<profile>.yaml: smoke, quick or paper'),
        new_code_cell(SETUP),
        new_markdown_cell("## Generate or check the data\n\nThe generator is deterministic: the same seed "
                          "writes byte-identical files. A second call finds the manifest and returns at once."),
        new_code_cell(CHECK + 'manifest = stages.prepare_data(params)\nmanifest.get("counts", manifest.get("datasets"))'),
        new_markdown_cell("## A look at the test frames\n\nPositives with their ground-truth boxes, and "
                          "negatives whose sound has no visible source."),
        new_code_cell(IGNORE + "figures = stages.preview_data(params)\nfor path in figures:\n    display(Image(filename=str(path), width=640))"),
        new_markdown_cell("## Results\n\nThe data are in place; their paths are recorded in the profile. "
                          "Next: `01_testsets.ipynb` builds Table 1 from the metadata alone."),
    ],
    "01_testsets.ipynb": [
        new_markdown_cell("# 01 · Extended test sets — Table 1\n\nThe extended test sets add negatives (no visible "
                          "sound source) to the positives: real ones (hand-picked clips whose source is off screen), "
                          "and automated ones pairing a frame with another clip's sound — *hard* when both clips "
                          "share a class, *easy* otherwise (paper §2). Only metadata is read."),
        params_cell('profile: str = "smoke"  # params/<profile>.yaml: smoke, quick or paper'),
        new_code_cell(SETUP),
        new_markdown_cell("## The index of each test set\n\nOne row per test sample: positives carry their "
                          "ground-truth area and size bucket, negatives their type."),
        new_code_cell(CHECK + 'sets = stages.testsets(params)\n{name: len(index) for name, index in sets.items()}'),
        new_code_cell(IGNORE + 'sets[params["datasets"][-1]].head()'),
        new_markdown_cell("## Results: Table 1\n\nCounts per size bucket and per negative type, exported as "
                          "csv/md/tex under `results/<profile>/tables/`. The paper's values are in "
                          "`vslrepro/paper_values.csv`."),
        new_code_cell(CHECK + "table, paths = stages.table1(params)\ntable"),
    ],
    "02_object_prior.ipynb": [
        new_markdown_cell("# 02 · Object prior\n\nThe paper initializes the image encoder from ImageNet, and OGL "
                          "uses an ImageNet network as an objectness prior. Offline, a short supervised "
                          "pretraining on the labelled synthetic object set stands in for it (design §4.2). "
                          "The `paper` profile uses torchvision's ImageNet ResNet-18 weights instead."),
        params_cell('profile: str = "smoke"  # params/<profile>.yaml: smoke, quick or paper'),
        new_code_cell(SETUP),
        new_markdown_cell("## Pretrain (once) and cache\n\nThe weights are cached by their parameters and reused "
                          "by every method that starts from a pretrained image encoder, and by OGL."),
        new_code_cell(IGNORE + "info = stages.object_prior(params)\ninfo"),
        new_markdown_cell("## Results\n\nThe training accuracy says the prior knows the object classes; "
                          "it never saw a sound."),
        new_code_cell('print(f"object-prior weights: {info.get(\'source\', \'?\')}; train accuracy: {info.get(\'train_accuracy\', float(\'nan\')):.2f}")'),
    ],
    "03_train.ipynb": [
        new_markdown_cell("# 03 · Train one method — BEST vs LATEST (Table 2)\n\nOne run per (dataset, method) "
                          "for a fixed number of epochs. After every epoch the annotated validation split is scored; "
                          "the run keeps `best.pt` (early stopping) and `latest.pt` (no early stopping), the "
                          "comparison of Table 2 (design §7)."),
        params_cell('profile: str = "smoke"  # params/<profile>.yaml: smoke, quick or paper\n'
                    'dataset: str = "vggss"  # flickr or vggss\n'
                    'method: str = "ezvsl"  # a trainable method of vslrepro.methods'),
        new_code_cell(SETUP),
        new_markdown_cell("## Train (or resume)\n\nA run killed at any point resumes from `latest.pt` with the "
                          "same end result; a finished run returns at once."),
        new_code_cell(IGNORE + "run = stages.train(params, dataset, method, progress=False)\nrun.name"),
        new_markdown_cell("## Training curves\n\nThe gap between the best validation epoch and the last one is "
                          "the early-stopping effect the paper measures."),
        new_code_cell(IGNORE + "history = stages.history(params, dataset, method)\n"
                      "path = stages.plot_history(params, dataset, method)\n"
                      "display(Image(filename=str(path), width=600))"),
        new_markdown_cell("## Results"),
        new_code_cell(CHECK + 'print(f"{len(history)} epochs; BEST epoch {int(history.loc[history[\'val_locacc\'].idxmax(), \'epoch\'])}; "\n'
                      '      f"val LocAcc best {history[\'val_locacc\'].max():.3f}, latest {history[\'val_locacc\'].iloc[-1]:.3f}")'),
    ],
    "04_evaluate.ipynb": [
        new_markdown_cell("# 04 · Evaluate on the extended test set\n\nPer-sample cIoU and confidence of one method "
                          "(BEST and LATEST checkpoints, or the training-free reference maps) on the extended test "
                          "set, written as CSV for the tables (design §5)."),
        params_cell('profile: str = "smoke"  # params/<profile>.yaml: smoke, quick or paper\n'
                    'dataset: str = "vggss"  # flickr or vggss\n'
                    'method: str = "ezvsl"  # a method or reference of vslrepro.methods'),
        new_code_cell(SETUP),
        new_markdown_cell("## Per-sample results\n\nOne CSV per checkpoint under `results/<profile>/samples/`."),
        new_code_cell(IGNORE + "paths = {ckpt: stages.evaluate(params, dataset, method, ckpt, progress=False)\n"
                      "         for ckpt in stages.checkpoints_of(method)}\npaths"),
        new_markdown_cell("## Where the method looks\n\nThe map over a few test frames: positives with their "
                          "ground truth (white contour), then negatives, with the `max` confidence."),
        new_code_cell(IGNORE + "path = stages.plot_overlays(params, dataset, method)\n"
                      "display(Image(filename=str(path), width=720))"),
        new_markdown_cell("## Results\n\nLocAcc over positives; AP and max-F1 over positives and negatives."),
        new_code_cell(CHECK + "summary = stages.summary_table(params, dataset, method)\nsummary.round(3)"),
    ],
    "05_tables.ipynb": [
        new_markdown_cell("# 05 · Tables 2–4 and figures\n\nEvery per-sample CSV of the profile becomes the paper's "
                          "tables, with the paper's published values side by side, plus precision–recall curves."),
        params_cell('profile: str = "smoke"  # params/<profile>.yaml: smoke, quick or paper'),
        new_code_cell(SETUP + "\nimport pandas as pd\n"
                      "from vslrepro import tables"),
        new_markdown_cell("## Table 2 — LocAcc with (BEST) and without (LATEST) early stopping"),
        new_code_cell(IGNORE + "written = stages.tables(params)\npd.read_csv(written['table2'])"),
        new_markdown_cell("## Table 3 — AP, max-F1 and Precision on the extended test sets"),
        new_code_cell(IGNORE + "pd.read_csv(written['table3'])"),
        new_markdown_cell("## Table 4 — max-F1 per negative type"),
        new_code_cell(IGNORE + "pd.read_csv(written['table4'])"),
        new_markdown_cell("## Precision–recall curves"),
        new_code_cell(IGNORE + "for path in stages.plot_pr_curves(params):\n    display(Image(filename=str(path), width=360))"),
        new_markdown_cell("## Results"),
        new_code_cell(CHECK + "{name: pd.read_csv(path).shape for name, path in written.items()}"),
    ],
}


def main():
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        nbformat.write(nb, HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
