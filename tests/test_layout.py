"""The stage contract (vslrepro.layout) and the pipeline's use of it: stage inputs, failures that
block downstream stages without leaving stale results marked fresh, and run keys that follow the code."""

from __future__ import annotations

import json

import pytest

from vslrepro import layout, pipeline, stages
from vslrepro.methods import method_class


def test_tables_depend_on_every_evaluation(smoke_params):
    plan = {stage.key: stage for stage in pipeline.plan(smoke_params)}
    evaluations = [key for key in plan if key.startswith("evaluate_")]
    assert set(evaluations) <= set(plan["tables"].needs)
    expected = {layout.samples_csv(smoke_params, e.dataset, e.method, e.checkpoint)
                for e in layout.evaluations(smoke_params)}
    assert expected <= set(plan["tables"].inputs)
    ogl = plan["evaluate_flickr_ezvsl_ogl"]
    assert "train_flickr_ezvsl" in ogl.needs  # OGL reads the EZ-VSL run's checkpoints
    assert layout.checkpoint_file(layout.run_dir(smoke_params, "flickr", "ezvsl"), "best") in ogl.inputs
    assert not any(key.startswith("train_") and "ogl" in key for key in plan)


def test_a_failed_evaluation_blocks_the_tables_and_leaves_nothing_stale(tmp_path, monkeypatch, smoke_params):
    monkeypatch.setenv("VSLREPRO_RESULTS", str(tmp_path))
    monkeypatch.setenv("VSLREPRO_CACHE", str(tmp_path / "cache"))  # fake checkpoints go there
    ran: list[str] = []

    def fake(stage, executed, log, threads):  # writes each stage's outputs, as a notebook would
        ran.append(stage.key)
        executed.write_text("{}")
        for path in stage.outputs + stage.products:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{stage.key} {len(ran)}")
        if stage.key == "evaluate_vggss_center" and failing:
            raise RuntimeError("media missing")

    failing = False
    first = pipeline.reproduce("smoke", log=lambda *_: None, execute=fake)
    assert set(first.values()) == {"ran"}
    stamp = layout.stage_files(smoke_params, "tables")["stamp"]
    assert stamp.is_file()
    # the same inputs: everything is up to date
    assert set(pipeline.reproduce("smoke", log=lambda *_: None, execute=fake).values()) == {"skipped"}

    failing = True
    csv = layout.samples_csv(smoke_params, "vggss", "center", "none")
    csv.write_text("changed")  # an input of the tables changed: they would be rebuilt ...
    second = pipeline.reproduce("smoke", log=lambda *_: None, execute=fake, force=True)
    assert second["evaluate_vggss_center"].startswith("failed: RuntimeError: media missing")
    assert second["tables"].startswith("blocked by") and "evaluate_vggss_center" in second["tables"]
    assert not csv.exists()          # ... but the failed evaluation's stale CSV is gone
    assert not stamp.exists()        # and the old tables are not marked fresh
    assert second["evaluate_flickr_ezvsl"] == "ran"  # the independent stages still ran
    status = json.loads((tmp_path / "smoke" / "pipeline_status.json").read_text())
    assert status["tables"] == second["tables"]


def test_run_key_follows_parameters_method_config_and_code(smoke_params, monkeypatch):
    key = layout.run_key(smoke_params, "ezvsl")
    assert layout.run_key(smoke_params, "ezvsl") == key
    other_tau = {**smoke_params, "methods": {**smoke_params["methods"], "ezvsl": {"tau": 0.05}}}
    assert layout.run_key(other_tau, "ezvsl") != key
    other_alpha = {**smoke_params, "methods": {**smoke_params["methods"], "ezvsl_ogl": {"alpha": 0.5}}}
    assert layout.run_key(other_alpha, "ezvsl") == key  # OGL's fusion does not change the EZ-VSL run
    assert layout.run_dir(smoke_params, "flickr", "ezvsl_ogl") == layout.run_dir(smoke_params, "flickr", "ezvsl")
    real_source = layout._module_source
    monkeypatch.setattr(layout, "_module_source",
                        lambda name: real_source(name) + ("# edited" if name == "vslrepro.methods.ezvsl" else ""))
    assert layout.run_key(smoke_params, "ezvsl") != key  # the training code changed: another run


def test_a_run_folder_of_another_identity_is_refused(tmp_path, smoke_params):
    params = {**smoke_params, "train": {**smoke_params["train"], "epochs": 1}}
    run = stages.train(params, "flickr", "ezvsl", out=tmp_path / "run", progress=False)
    recorded = json.loads((run / "run.json").read_text())["identity"]
    assert recorded == json.loads(json.dumps(layout.run_identity(params, "ezvsl")))
    other = {**params, "train": {**params["train"], "lr": 0.01}}
    with pytest.raises(RuntimeError, match="another run identity .*profile"):
        stages.train(other, "flickr", "ezvsl", out=run, progress=False)
    (run / "run.json").unlink()  # an unfinished run is checked through latest.pt
    with pytest.raises(RuntimeError, match="refusing to resume"):
        stages.train(other, "flickr", "ezvsl", out=run, progress=False)


def test_skip_logs_live_beside_samples_not_in_them(smoke_params):
    csv = layout.samples_csv(smoke_params, "flickr", "ezvsl", "best")
    assert csv.parent.name == "samples"
    assert layout.skip_log(csv).parent.name == "skipped" and layout.skip_log(csv).name == csv.name
    assert method_class("center").checkpoints() == ("none",)


def test_a_module_without_source_warns_loudly(monkeypatch):
    import sys
    import types

    module = types.ModuleType("vslrepro_interactive_method")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    with pytest.warns(UserWarning, match="source of module 'vslrepro_interactive_method' is not available"):
        assert layout._module_source(module.__name__) == "<no source: vslrepro_interactive_method>"


@pytest.mark.parametrize("jobs", [1, 3])
def test_parallel_stages_start_after_their_needs(tmp_path, monkeypatch, smoke_params, jobs):
    """With several stages at once, no stage starts before every stage it needs has finished; the
    statuses do not depend on the number of jobs; each stage gets cpu_count // jobs threads."""
    import os
    import threading
    import time

    monkeypatch.setenv("VSLREPRO_RESULTS", str(tmp_path))
    events: list[tuple[str, str]] = []
    lock = threading.Lock()
    seen_threads = set()

    def fake(stage, executed, log, threads):
        with lock:
            events.append(("start", stage.key))
            seen_threads.add(threads)
        time.sleep(0.02)
        executed.write_text("{}")
        for path in stage.outputs:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(stage.key)
        with lock:
            events.append(("end", stage.key))

    status = pipeline.reproduce("smoke", log=lambda *_: None, execute=fake, jobs=jobs)
    plan = pipeline.plan(smoke_params)
    assert list(status) == [stage.key for stage in plan] and set(status.values()) == {"ran"}
    position = {event: i for i, event in enumerate(events)}
    for stage in plan:
        for need in stage.needs:
            assert position[("end", need)] < position[("start", stage.key)], (need, stage.key)
    concurrent = max(sum(1 for kind, _ in events[:i + 1] if kind == "start")
                     - sum(1 for kind, _ in events[:i + 1] if kind == "end") for i in range(len(events)))
    assert concurrent <= jobs
    assert seen_threads == {max(1, (os.cpu_count() or 1) // jobs)}


def test_a_training_stage_whose_checkpoints_are_gone_runs_again(tmp_path, monkeypatch, smoke_params):
    """A stamp alone does not make a training stage up to date: its run's checkpoints must exist
    (a run folder removed, or keyed anew, is trained again before anything evaluates it)."""
    monkeypatch.setenv("VSLREPRO_RESULTS", str(tmp_path))
    monkeypatch.setenv("VSLREPRO_CACHE", str(tmp_path / "cache"))
    ran: list[str] = []

    def fake(stage, executed, log, threads):
        ran.append(stage.key)
        executed.write_text("{}")
        for path in stage.outputs + stage.products:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(stage.key)

    pipeline.reproduce("smoke", log=lambda *_: None, execute=fake, jobs=1)
    ran.clear()
    best = layout.checkpoint_file(layout.run_dir(smoke_params, "vggss", "ezvsl"), "best")
    best.unlink()
    status = pipeline.reproduce("smoke", log=lambda *_: None, execute=fake, jobs=1)
    assert status["train_vggss_ezvsl"] == "ran" and ran == ["train_vggss_ezvsl"]
    assert best.is_file()


def test_evaluations_without_skipped_samples_are_up_to_date_on_a_second_call(tmp_path, monkeypatch, smoke_params):
    """A skip log is written only when `--skip-bad` left samples out: its absence must not make an
    evaluation look unfinished (every evaluation would otherwise re-run on every call)."""
    monkeypatch.setenv("VSLREPRO_RESULTS", str(tmp_path))
    monkeypatch.setenv("VSLREPRO_CACHE", str(tmp_path / "cache"))

    def fake(stage, executed, log, threads):  # what a clean evaluation writes: no skip log
        executed.write_text("{}")
        for path in stage.outputs + stage.products:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(stage.key)

    first = pipeline.reproduce("smoke", log=lambda *_: None, execute=fake, jobs=1)
    assert set(first.values()) == {"ran"}
    plan = pipeline.plan(smoke_params)
    evaluation = next(stage for stage in plan if stage.key == "evaluate_flickr_center")
    assert evaluation.optional_outputs and not any(path.exists() for path in evaluation.optional_outputs)
    second = pipeline.reproduce("smoke", log=lambda *_: None, execute=fake, jobs=1)
    assert set(second.values()) == {"skipped"}, {k: v for k, v in second.items() if v != "skipped"}
