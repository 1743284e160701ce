"""The deep-learning workflow of the lecture notes with the user's own network: a
``torch.nn.Module`` named in the spec trains through the cnn kind, checkpoints, sweeps (which
choose by the validation split) and DDP; bad names are one line, exit 2, no run directory."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

torch = pytest.importorskip("torch")

from conftest import ROOT, hpcml_cli  # noqa: E402
from hpcml.errors import SpecError  # noqa: E402
from hpcml.models.base import Dataset, FitContext  # noqa: E402
from hpcml.models.cnn.kind import CNNKind  # noqa: E402

pytestmark = pytest.mark.torch
VENV_BIN = Path(sys.executable).parent

NETS = '''
import torch
from torch import nn

NOT_A_NET = 3

class Plain:
    pass

class TinyNet(nn.Module):
    """Logits, not log-probabilities: hpcml applies log_softmax."""
    def __init__(self, input_shape, n_classes, hidden=16):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(input_shape[1] * input_shape[2], hidden), nn.ReLU(),
                                  nn.Linear(hidden, n_classes))
    def forward(self, x):
        return self.body(x)

class TinyConv(nn.Module):
    def __init__(self, filters=4):
        super().__init__()
        self.conv = nn.Conv2d(1, filters, 3, padding=1)
        self.fc = nn.Linear(filters * 4 * 4, 10)
    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv(x)), 2)
        return torch.log_softmax(self.fc(x.flatten(1)), dim=1)
'''


@pytest.fixture(scope="module")
def nets(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user") / "nets.py"
    path.write_text(NETS)
    return path


@pytest.fixture(scope="module")
def digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    return Dataset(X=np.ascontiguousarray(d.data / 16.0), y=d.target.astype(np.int64),
                   features=[f"px{i}" for i in range(64)], target="digit", image_shape=(1, 8, 8),
                   classes=list(range(10)))


def job(tmp_path: Path, name: str, model: dict, plan: dict | None = None) -> dict:
    return {"name": name, "seed": 4, "data": {"source": "sklearn:digits", "target": "target"},
            "model": {"kind": "cnn", "epochs": 2, "batch_size": 64, "plots": False, "device": "cpu", **model},
            "plan": plan or {"fit": {}}, "backend": {"name": "local", "workers": 1},
            "output": str(tmp_path / name)}


# ---------------------------------------------------------------- the kind (fast)

def test_user_net_trains_and_resumes_from_checkpoint(nets, digits, tmp_path):
    kind = CNNKind()
    p = kind.Params(arch=f"{nets}:TinyNet", arch_params={"hidden": 32}, epochs=3, val_fraction=0.2)
    assert kind.check(p, digits) == []
    fit = kind.fit(p, digits, None, FitContext(rng=np.random.default_rng(1), scratch=tmp_path / "a"))
    out = kind.outputs(p, fit, digits)
    assert out["val_accuracy"] > 0.6 and out["n_parameters"] == 64 * 32 + 32 + 32 * 10 + 10
    logp = fit.model(torch.zeros(2, 1, 8, 8))  # logits became log-probabilities
    torch.testing.assert_close(logp.exp().sum(1), torch.ones(2))
    # Killed after epoch 3 of 5, rerun: resumes from the checkpoint, equals an uninterrupted run.
    p5 = kind.Params(**{**p.model_dump(), "epochs": 5})
    resumed = kind.fit(p5, digits, None, FitContext(rng=np.random.default_rng(1), scratch=tmp_path / "a"))
    fresh = kind.fit(p5, digits, None, FitContext(rng=np.random.default_rng(1), scratch=tmp_path / "b"))
    for k, v in fresh.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k
    assert (tmp_path / "a" / "curves.png").exists() and (tmp_path / "a" / "confusion.png").exists()


@pytest.mark.parametrize("arch, args, field, says", [
    ("{nets}:Missing", {}, "model.arch", "defines no 'Missing'"),
    ("{nets}:Plain", {}, "model.arch", "not a torch.nn.Module"),
    ("{nets}:NOT_A_NET", {}, "model.arch", "not a torch.nn.Module"),
    ("{dir}/absent.py:Net", {}, "model.arch", "not found"),
    ("no_such_package_xyz.nets:Net", {}, "model.arch", "cannot import"),
    ("{nets}:TinyNet", {"width": 3}, "model.arch_params", "unexpected keyword argument 'width'"),
    ("torch.nn:Identity", {}, "model.arch", "(batch, 10)"),
])
def test_bad_user_net_is_one_problem_and_no_run_dir(nets, tmp_path, arch, args, field, says):
    from hpcml import run

    arch = arch.format(nets=nets, dir=nets.parent)
    with pytest.raises(SpecError) as err:
        run(job(tmp_path, "bad", {"arch": arch, "arch_params": args}), progress=False)
    (line,) = err.value.lines()
    assert line.startswith(f"{field}: ") and says in line, line
    assert not (tmp_path / "bad").exists()


def test_bad_user_net_on_the_command_line_exit_2(nets, tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job(tmp_path, "bad", {"arch": f"{nets}:Plain"})))
    proc = hpcml_cli("run", path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: model.arch: ") and f"{nets}:Plain" in lines[0], lines
    assert not (tmp_path / "bad").exists()
    assert "unknown arch" in hpcml_cli("validate", _with(path, {"arch": "resnet"})).stderr


def _with(path: Path, model: dict) -> Path:
    spec = yaml.safe_load(path.read_text())
    spec["model"].update(model)
    other = path.with_name("other.yaml")
    other.write_text(yaml.safe_dump(spec))
    return other


def test_sweep_tasks_share_one_validation_split():
    from hpcml.plans.sweep import SweepPlan
    from hpcml.spec import load_job

    spec = {"name": "s", "seed": 3, "data": {"source": "sklearn:digits", "target": "target"},
            "model": {"kind": "cnn"}, "plan": {"sweep": {"grid": {"lr": [0.1, 0.01]}}}}
    a, b = (SweepPlan().shared(load_job(spec), 100) for _ in range(2))
    assert a["split_seed"] == b["split_seed"]
    assert CNNKind().sweep_metric(CNNKind.Params()) == ("val_accuracy", True)


# ---------------------------------------------------------------- a sweep of user nets (slow)

@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sweep_of_user_nets_chooses_by_validation(nets, tmp_path):
    from hpcml import run

    spec = job(tmp_path, "sweep", {"arch_params": {}},
               {"sweep": {"grid": {"arch": [f"{nets}:TinyConv", f"{nets}:TinyNet"], "lr": [0.003, 0.03]}}})
    res = run(spec, progress=False)
    assert res.ok and len(res.results) == 4
    s = res.summary
    assert s["metric"] == "val_accuracy"
    ok = res.results
    # Every configuration validated on the same rows: one split, drawn once for the sweep.
    board = s["leaderboard"]
    vals = [r["val_accuracy"] for r in board]
    assert vals == sorted(vals, reverse=True) and not any("test_accuracy" in r for r in board)
    best = ok.loc[ok["val_accuracy"].idxmax()]
    assert (s["best"]["arch"], s["best"]["lr"]) == (best["param_arch"], best["param_lr"])
    assert s["best"]["test_accuracy"] == pytest.approx(best["test_accuracy"])  # the chosen one's test score
    assert {"val_accuracy", "s/epoch", "parameters"} <= set(s["table"][0])
    assert s["notes"][0].startswith("chosen by validation accuracy")
    assert (res.run_dir / "plots" / "leaderboard.png").exists()


# ---------------------------------------------------------------- DDP with a user net (slow)

@pytest.mark.slow
@pytest.mark.timeout(300)
def test_user_net_under_torchrun_matches_one_process(nets, tmp_path):
    from hpcml import run

    if shutil.which("torchrun", path=str(VENV_BIN)) is None:
        pytest.fail("torchrun is missing from the venv (it ships with torch)")
    model = {"arch": f"{nets}:TinyConv", "arch_params": {"filters": 6}, "val_fraction": 0.2}
    spec = tmp_path / "ddp.yaml"
    spec.write_text(yaml.safe_dump(job(tmp_path, "ddp", model)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    proc = subprocess.run([str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "hpcml.ddp",
                           str(spec)], cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    two = pd.read_parquet(tmp_path / "ddp" / "results.parquet")
    one = run(job(tmp_path, "one", model), progress=False)
    assert two["world_size"].tolist() == [2] and two["status"].tolist() == ["ok"]
    assert abs(two["val_accuracy"].iloc[0] - one.results["val_accuracy"].iloc[0]) <= 0.01
    ckpt = "artifacts/fit-000000/checkpoints/last.pt"
    s1 = torch.load(one.run_dir / ckpt, weights_only=True)["model"]
    s2 = torch.load(tmp_path / "ddp" / ckpt, weights_only=True)["model"]
    for k in s1:
        torch.testing.assert_close(s2[k], s1[k], atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- TensorBoard (slow)

@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tensorboard_runs_named_by_parameters_with_hparams_and_histograms(nets, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from hpcml import run

    spec = job(tmp_path, "tb", {"tensorboard": True, "arch_params": {"hidden": 8}},
               {"sweep": {"grid": {"arch": [f"{nets}:TinyNet"], "lr": [0.003, 0.03]}}})
    res = run(spec, progress=False)
    assert res.ok
    logdir = res.run_dir / "tensorboard"
    assert sorted(p.name for p in logdir.iterdir()) == ["arch=TinyNet,lr=0.003", "arch=TinyNet,lr=0.03"]
    events = EventAccumulator(str(logdir / "arch=TinyNet,lr=0.03"), size_guidance={"tensors": 0, "histograms": 0})
    events.Reload()
    tags = events.Tags()
    assert [e.step for e in events.Scalars("val_accuracy")] == [1, 2]
    assert {"body.1.weight", "body.3.bias"} <= set(tags["histograms"])
    assert len(events.Histograms("body.1.weight")) == 2
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["lr"].number_value == pytest.approx(0.03)
    assert start.hparams["arch"].string_value == "TinyNet" and start.hparams["arch_params.hidden"].number_value == 8
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert "hparam/val_accuracy" in {m.name.tag for m in experiment.metric_infos}
    row = res.results.set_index("param_lr").loc[0.03]
    assert events.Scalars("hparam/val_accuracy")[0].value == pytest.approx(row["val_accuracy"], abs=1e-6)


def test_epoch_progress_lines(nets, digits, caplog):
    import logging

    kind = CNNKind()
    p = kind.Params(arch="fc", epochs=2)
    with caplog.at_level(logging.INFO, logger="hpcml.models.cnn.train"):
        kind.fit(p, digits, None, FitContext(rng=np.random.default_rng(0), task_id="sweep/000003",
                                             task_params={"params": {"lr": 0.01}, "repeat": 0}))
    lines = [r.getMessage() for r in caplog.records if "epoch" in r.getMessage()]
    assert len(lines) == 2 and lines[1].startswith("lr=0.01 epoch 2/2: train_loss ") and "val_accuracy" in lines[1]


def test_fashion_mnist_class_names_label_the_confusion_matrix(tmp_path):
    from hpcml.data.images import CLASS_NAMES, load_image_source, write_idx

    rng = np.random.default_rng(0)
    fashion = tmp_path / "fashion-mnist"
    fashion.mkdir()
    for kind in ("train", "t10k"):
        write_idx(fashion / f"{kind}-images-idx3-ubyte", rng.integers(0, 256, size=(40, 8, 8), dtype=np.uint8))
        write_idx(fashion / f"{kind}-labels-idx1-ubyte", (np.arange(40) % 10).astype(np.uint8))
    data = load_image_source(f"idx:{fashion}")
    assert data.meta["class_names"][0] == "T-shirt/top" and data.meta["class_names"][9] == "Ankle boot"
    own = load_image_source(f"idx:{fashion}", {"class_names": list("abcdefghij")})
    assert own.meta["class_names"][1] == "b"
    kind = CNNKind()
    fit = kind.fit(kind.Params(arch="fc", epochs=1), data, None,
                   FitContext(rng=np.random.default_rng(0), scratch=tmp_path / "task"))
    assert fit.class_names == CLASS_NAMES["fashion-mnist"] and (tmp_path / "task" / "confusion.png").exists()


def test_quiet_silences_the_epoch_lines_of_worker_processes(tmp_path):
    """``hpcml run -q`` prints no per-epoch lines, also from the local worker processes that
    train (which nobody's logging configures); without ``-q`` they are there."""
    spec = job(tmp_path, "q", {"arch": "fc", "epochs": 1}, plan={"sweep": {"grid": {"lr": [0.01, 0.05]}}})
    spec["backend"] = {"name": "local", "workers": 2}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    loud = hpcml_cli("run", path)
    assert loud.returncode == 0, loud.stderr
    assert "epoch 1/1: train_loss" in loud.stderr, loud.stderr
    quiet = hpcml_cli("run", path, "-q", "--overwrite")
    assert quiet.returncode == 0, quiet.stderr
    assert "epoch" not in quiet.stderr, quiet.stderr


def test_a_nested_grid_value_is_named_key_by_key():
    """Progress lines, TensorBoard runs and plot titles name ``arch_params`` of a grid point as
    a person writes it, not as escaped JSON (``arch_params=__c1__8,...``)."""
    from types import SimpleNamespace

    from hpcml.models.cnn.kind import run_label

    ctx = SimpleNamespace(task_id="sweep/000003", task_params={
        "params": {"arch_params": {"c1": 8, "c2": 16, "hidden": 32}, "lr": 0.01}, "repeat": 0})
    assert run_label(ctx) == "arch_params.c1=8,arch_params.c2=16,arch_params.hidden=32,lr=0.01"
    ctx.task_params["repeat"] = 2
    assert run_label(ctx).endswith(",lr=0.01,repeat=2")


@pytest.mark.timeout(300)
def test_a_sweep_over_arch_params_has_a_results_column_per_key(nets, tmp_path):
    """A sweep whose grid sets ``arch_params`` mappings: results.parquet, the leaderboard and
    the chosen configuration name each key (``param_arch_params.hidden``, ``arch_params.hidden``)
    as an integer, as progress lines, TensorBoard and MLflow do; no column of JSON text."""
    import json

    import pyarrow.parquet as pq

    from hpcml import run

    spec = job(tmp_path, "mapping", {"arch": f"{nets}:TinyNet", "epochs": 1, "progress": False},
               {"sweep": {"grid": {"arch_params": [{"hidden": 8}, {"hidden": 16}]}}})
    res = run(spec, progress=False, plots=False)
    assert res.ok
    schema = pq.read_schema(res.run_dir / "results.parquet")
    assert "param_arch_params" not in schema.names and str(schema.field("param_arch_params.hidden").type) == "int64"
    assert sorted(res.results["param_arch_params.hidden"]) == [8, 16]
    summary = json.loads((res.run_dir / "summary.json").read_text())
    assert summary["grid"] == ["arch_params.hidden"]
    assert sorted(r["arch_params.hidden"] for r in summary["leaderboard"]) == [8, 16]
    assert summary["best"]["arch_params.hidden"] in (8, 16) and type(summary["best"]["arch_params.hidden"]) is int
    assert f"arch_params.hidden={summary['best']['arch_params.hidden']};" in summary["notes"][0]


def test_a_grid_arch_params_is_merged_key_by_key_and_a_typo_in_the_base_refused(nets, tmp_path):
    """Base ``arch_params: {hiden: 8}`` (a typo) with a grid over ``arch_params: {...}``: the
    base's key is kept and checked, so the typo is a spec error naming model.arch_params, where
    it had been silently replaced by each grid point's mapping."""
    kind = CNNKind()
    base = kind.Params(arch=f"{nets}:TinyNet", arch_params={"hidden": 8, "extra": 1})
    merged = kind.with_params(base, {"arch_params": {"hidden": 32}, "lr": 0.1})
    assert merged.arch_params == {"hidden": 32, "extra": 1} and merged.lr == 0.1
    spec = job(tmp_path, "typo", {"arch": f"{nets}:TinyNet", "arch_params": {"hiden": 8}},
               {"sweep": {"grid": {"arch_params": [{"hidden": 8}, {"hidden": 16}]}}})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = hpcml_cli("validate", path)
    assert proc.returncode == 2 and "model.arch_params" in proc.stderr and "hiden" in proc.stderr, proc.stderr


# ---------------------------------------------------------------- where a training runs

def test_a_one_task_training_runs_in_the_driver_bit_identical_to_a_worker_and_several_use_workers(nets, tmp_path,
                                                                                                   monkeypatch):
    """A one-task cnn run of a built-in net on the local backend trains in the driver (it has
    imported torch and loaded the images for its checks): the same outputs, history, weights and
    files as a worker's run, bit for bit. A job of several trainings, the user's own net, and
    ``in_driver: false`` use workers."""
    import hpcml
    from hpcml.backends.local import LocalBackend

    spec = job(tmp_path, "where", {"arch": "cnn1", "epochs": 2, "plots": True})
    workers = hpcml.run(spec, out=tmp_path / "workers", in_driver=False, progress=False)

    def refuse(self, job_json, log_dir):
        raise AssertionError("a worker pool was started")

    monkeypatch.setattr(LocalBackend, "start", refuse)
    here = hpcml.run(spec, out=tmp_path / "here", progress=False)
    assert workers.ok and here.ok
    timing = ["seconds", "seconds_per_epoch", "attempt"]
    pd.testing.assert_frame_equal(workers.results.drop(columns=timing, errors="ignore"),
                                  here.results.drop(columns=timing, errors="ignore"), check_exact=True)
    for name in ("workers", "here"):
        assert (tmp_path / name / "artifacts" / "fit-000000" / "confusion.png").is_file()
    a, b = (pd.read_csv(tmp_path / n / "artifacts" / "fit-000000" / "history.csv").drop(columns="seconds")
            for n in ("workers", "here"))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    ckpt = [torch.load(tmp_path / n / "artifacts" / "fit-000000" / "checkpoints" / "last.pt", weights_only=False)
            for n in ("workers", "here")]
    for key, value in ckpt[0]["model"].items():
        assert torch.equal(value, ckpt[1]["model"][key]), key
    files = [sorted(re.sub(r"-[0-9a-f]+\.parquet$", "", str(p.relative_to(tmp_path / n)))
                    for p in (tmp_path / n).rglob("*") if p.is_file()) for n in ("workers", "here")]
    assert files[0] == files[1]
    with pytest.raises(AssertionError, match="worker pool"):
        hpcml.run(job(tmp_path, "two", {"arch": "fc", "epochs": 1}, plan={"sweep": {"grid": {"lr": [0.01, 0.05]}}}),
                  progress=False)
    with pytest.raises(AssertionError, match="worker pool"):
        hpcml.run(spec, out=tmp_path / "forced", in_driver=False, progress=False)
    with pytest.raises(AssertionError, match="worker pool"):
        hpcml.run(job(tmp_path, "own", {"arch": f"{nets}:TinyNet", "epochs": 1}), progress=False)
