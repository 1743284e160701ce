"""Networks, training loop, cnn kind, IDX reader and plots, on sklearn's 8x8 digits (fast)."""
from __future__ import annotations

import copy
import gzip
import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from hpcml.data.images import (download_with_checksum, load_idx_dataset, load_image_source, read_idx,  # noqa: E402
                               read_idx_head, write_idx)
from hpcml.models.base import MODEL_KINDS, Dataset, FitContext  # noqa: E402
from hpcml.models.cnn.nets import ARCHITECTURES, LADDER, build_model  # noqa: E402
from hpcml.models.cnn.kind import CNNKind  # noqa: E402
from hpcml.models.cnn.plots import filter_mosaic, write_training_plots  # noqa: E402
from hpcml.models.cnn.train import TrainConfig, evaluate, to_tensors, train  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    return Dataset(X=np.ascontiguousarray(d.data / 16.0), y=d.target.astype(np.int64),
                   features=[f"px{i}" for i in range(64)], target="digit", image_shape=(1, 8, 8),
                   classes=list(range(10)))


def ctx(seed=0, scratch=None):
    return FitContext(rng=np.random.default_rng(seed), threads=1, scratch=scratch)


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------- architectures

@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28)])
def test_every_arch_builds_and_runs(arch, shape):
    torch.manual_seed(0)
    model = build_model(arch, shape, 10)
    out = model(torch.rand(5, *shape))
    assert out.shape == (5, 10)
    # log-probabilities everywhere
    torch.testing.assert_close(out.exp().sum(1), torch.ones(5))


def test_ladder_params_and_paper_sizes():
    for _, arch, p in LADDER:
        build_model(arch, (1, 8, 8), 10, **p)
    # The ALCF net on 28x28 is the notes' one: fc1 takes 320 features.
    assert build_model("alcf_net", (1, 28, 28), 10).fc1.in_features == 320
    # A 9x9 sdsc kernel needs padding on 8x8 digits, none on 28x28.
    assert build_model("sdsc_mynet", (1, 8, 8), 10, numfilt=4, kernel_size=9)[0][0].padding == (2, 2)
    assert build_model("sdsc_mynet", (1, 28, 28), 10, kernel_size=9)[0][0].padding == (0, 0)


def test_bad_arch_and_params():
    with pytest.raises(ValueError, match="unknown arch"):
        build_model("resnet", (1, 8, 8), 10)
    with pytest.raises(ValueError, match="arch_params"):
        build_model("cnn1", (1, 8, 8), 10, nope=3)


# ---------------------------------------------------------------- the kind

def test_kind_registered_and_checks(digits):
    assert isinstance(MODEL_KINDS["cnn"], CNNKind)
    kind = CNNKind()
    assert kind.check(kind.Params(), digits) == []
    flat = Dataset(X=digits.X, y=digits.y, features=digits.features)
    assert kind.check(kind.Params(), flat)[0][0] == "data"
    with pytest.raises(Exception):
        kind.Params(lr=0)


@pytest.mark.parametrize("arch", ["fc", "cnn1"])
def test_short_training_learns_digits(digits, arch):
    kind = CNNKind()
    p = kind.Params(arch=arch, epochs=6, batch_size=32, val_fraction=0.2)
    fit = kind.fit(p, digits, None, ctx(1))
    out = kind.outputs(p, fit, digits)
    assert out["val_accuracy"] > 0.85
    assert not [k for k in out if k.startswith("test_")]  # no test split: plans that hold rows out score those as test_*
    assert out["epochs_run"] == 6 and out["seconds_per_epoch"] > 0
    sc = kind.score(p, fit, digits, np.arange(digits.n) < 500)
    assert sc["accuracy"] > 0.85 and 0 < sc["log_loss"] < 1


def test_same_seed_bit_identical(digits):
    kind = CNNKind()
    p = kind.Params(arch="cnn2_dropout", epochs=2, batch_size=64)
    a, b = (kind.fit(p, digits, None, ctx(7)).model for _ in range(2))
    assert_same(state(a), state(b))
    c = kind.fit(p, digits, None, ctx(8)).model
    assert not torch.equal(state(a)["0.0.weight"], state(c)["0.0.weight"])


def test_bootstrap_weights_and_test_split(digits):
    kind = CNNKind()
    w = np.random.default_rng(0).multinomial(digits.n, np.full(digits.n, 1 / digits.n)).astype(float)
    data = Dataset(X=digits.X[:1500], y=digits.y[:1500], features=digits.features, image_shape=(1, 8, 8),
                   classes=list(range(10)),
                   test=Dataset(X=digits.X[1500:], y=digits.y[1500:], features=digits.features, image_shape=(1, 8, 8)))
    p = kind.Params(arch="fc", epochs=3, val_fraction=0.1)
    out = kind.outputs(p, kind.fit(p, data, w[:1500], ctx(3)), data)
    assert 0.5 < out["test_split_accuracy"] <= 1 and out["test_split_accuracy"] != out["val_accuracy"]
    assert "test_accuracy" not in out and out["test_split_log_loss"] > 0  # the plan's name is not taken


# ---------------------------------------------------------------- training loop

def _tensors(digits, n=1200):
    X, y = to_tensors(digits.X, digits.y, (1, 8, 8), "cpu")
    return X[:n], y[:n], X[n:], y[n:]


def test_checkpoint_resume_equals_uninterrupted(digits, tmp_path):
    X, y, Xv, yv = _tensors(digits)
    cfg = dict(optimizer="adam", lr=3e-3, batch_size=64, step_size=1, gamma=0.7, patience=5, threads=1)
    torch.manual_seed(11)
    init = build_model("cnn2_dropout", (1, 8, 8), 10)

    straight = train(copy.deepcopy(init), X, y, TrainConfig(epochs=3, checkpoint_dir=tmp_path / "a", **cfg), 5, Xv, yv)
    # "Killed" after epoch 2: all that survives is the checkpoint directory.
    first = train(copy.deepcopy(init), X, y, TrainConfig(epochs=2, checkpoint_dir=tmp_path / "b", **cfg), 5, Xv, yv)
    assert first.epochs_run == 2
    resumed = train(copy.deepcopy(init), X, y, TrainConfig(epochs=3, checkpoint_dir=tmp_path / "b", **cfg), 5, Xv, yv)
    assert resumed.resumed_from == 2 and resumed.epochs_run == 3
    assert_same(state(straight.model), state(resumed.model))
    assert [h["val_loss"] for h in straight.history] == [h["val_loss"] for h in resumed.history]
    assert not list((tmp_path / "b").glob("*.tmp"))

    # A checkpoint from another seed is ignored, not resumed.
    other = train(copy.deepcopy(init), X, y, TrainConfig(epochs=3, checkpoint_dir=tmp_path / "b", **cfg), 6, Xv, yv)
    assert other.resumed_from == 0
    # Nor is one that is already past the requested number of epochs.
    shorter = train(copy.deepcopy(init), X, y, TrainConfig(epochs=2, checkpoint_dir=tmp_path / "a", **cfg), 5, Xv, yv)
    assert shorter.resumed_from == 0 and shorter.epochs_run == 2


def test_kind_resumes_from_scratch_dir(digits, tmp_path):
    kind = CNNKind()
    p3 = kind.Params(arch="cnn1", epochs=3, optimizer="sgd", lr=0.05, momentum=0.9)
    fresh = kind.fit(p3, digits, None, ctx(4, tmp_path / "fresh"))
    kind.fit(p3.model_copy(update={"epochs": 2}), digits, None, ctx(4, tmp_path / "killed"))
    resumed = kind.fit(p3, digits, None, ctx(4, tmp_path / "killed"))
    assert_same(state(fresh.model), state(resumed.model))
    assert (tmp_path / "killed" / "history.csv").read_text().count("\n") == 4


def test_equivalent_to_plain_pytorch_loop(digits):
    X, y, _, _ = _tensors(digits)
    torch.manual_seed(2)
    init = build_model("fc", (1, 8, 8), 10, hidden=[32])
    seed, bs, epochs = 123, 50, 2
    res = train(copy.deepcopy(init), X, y, TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, epochs=epochs,
                                                       batch_size=bs, threads=1), seed)
    plain = copy.deepcopy(init)
    opt = torch.optim.SGD(plain.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(X), bs):
            idx = perm[i:i + bs]
            opt.zero_grad()
            loss = F.nll_loss(plain(X[idx]), y[idx])
            loss.backward()
            opt.step()
    for k, v in state(plain).items():
        torch.testing.assert_close(res.model.state_dict()[k], v, atol=1e-6, rtol=0)


def test_early_stopping_restores_best(digits):
    X, y, Xv, yv = _tensors(digits)
    yv = yv[torch.randperm(len(yv), generator=torch.Generator().manual_seed(0))]  # noise: val loss rises
    torch.manual_seed(0)
    res = train(build_model("fc", (1, 8, 8), 10), X, y,
                TrainConfig(lr=0.01, epochs=40, patience=2, threads=1), 1, Xv, yv)
    assert res.stopped_early and res.epochs_run < 40 and res.best_epoch == res.epochs_run - 2
    assert evaluate(res.model, Xv, yv)["loss"] == pytest.approx(res.history[res.best_epoch - 1]["val_loss"])


def test_tensorboard_logs_every_epoch(digits, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    X, y, _, _ = _tensors(digits, 200)
    torch.manual_seed(0)
    result = train(build_model("fc", (1, 8, 8), 10), X, y, TrainConfig(epochs=2, tensorboard_dir=tmp_path / "tb"), 0)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "train_loss" in tags, tags
    for tag in tags:
        assert [e.step for e in events.Scalars(tag)] == [1, 2], tag
    logged = [e.value for e in events.Scalars("train_loss")]
    np.testing.assert_allclose(logged, [row["train_loss"] for row in result.history], rtol=1e-6)


# ---------------------------------------------------------------- IDX files

@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_roundtrip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7).astype(np.uint8)
    for kind in ("train", "t10k"):
        write_idx(tmp_path / f"{kind}-images-idx3-ubyte{suffix}", imgs)
        write_idx(tmp_path / f"{kind}-labels-idx1-ubyte{suffix}", labels)
    np.testing.assert_array_equal(read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}"), imgs)
    f32 = rng.random((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / f"f.idx{suffix}", f32)), f32)

    d = load_idx_dataset(tmp_path, "t10k")
    assert d.X.shape == (7, 784) and d.X.dtype == np.float64 and d.image_shape == (1, 28, 28)
    np.testing.assert_allclose(d.X[0], imgs[0].ravel() / 255.0)
    src = load_image_source(f"idx:{tmp_path}", {"limit": 5, "test_limit": 3})
    assert src.n == 5 and src.test.n == 3 and list(src.y) == list(labels[:5]) and src.classes == list(range(10))


def test_idx_corrupt_files_raise_with_name(tmp_path):
    good = write_idx(tmp_path / "ok-idx3-ubyte", np.zeros((2, 3, 3), np.uint8)).read_bytes()
    cases = {
        "magic": b"\x01" + good[1:],
        "dtype": good[:2] + b"\x42" + good[3:],
        "truncated": good[:-1],
        "trailing": good + b"\x00",
        "header": good[:9],
    }
    for name, blob in cases.items():
        p = tmp_path / f"{name}-idx3-ubyte"
        p.write_bytes(blob)
        with pytest.raises(ValueError, match=p.name):
            read_idx(p)
    gz = tmp_path / "cut-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(good)[:-10])
    with pytest.raises(ValueError, match=gz.name):
        read_idx(gz)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_read_with_a_limit_equals_the_whole_read_cut_and_checks_the_file(tmp_path, suffix):
    """A limit reads only the entries it keeps, the same values and types as the whole file
    cut; a damaged file fails with a limit as without one, in the same words."""
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, size=(9, 5, 4), dtype=np.uint8)
    f64 = rng.random((6, 3))
    for name, arr in (("u8", imgs), ("f8", f64)):
        path = write_idx(tmp_path / f"{name}-idx{suffix}", arr)
        for limit in (0, 2, 6, 50):
            got, n = read_idx_head(path, limit)
            assert n == len(arr) and got.dtype == arr.dtype and got.dtype.isnative
            np.testing.assert_array_equal(got, arr[:limit])
            np.testing.assert_array_equal(read_idx(path, limit), arr[:limit])
    good = (tmp_path / f"u8-idx{suffix}").read_bytes()
    raw = gzip.decompress(good) if suffix else good
    damaged = {"truncated": raw[:-1], "trailing": raw + b"\x00", "magic": b"\x01" + raw[1:], "header": raw[:9]}
    for name, blob in damaged.items():
        p = tmp_path / f"{name}-idx3-ubyte{suffix}"
        p.write_bytes(gzip.compress(blob) if suffix else blob)
        with pytest.raises(ValueError) as whole:
            read_idx(p)
        with pytest.raises(ValueError) as head:
            read_idx(p, 2)
        assert str(head.value) == str(whole.value) and p.name in str(head.value)
    if suffix:  # a gzip stream cut short: its trailer is gone
        cut = tmp_path / "cut-idx3-ubyte.gz"
        cut.write_bytes(good[:-10])
        with pytest.raises(ValueError, match=cut.name):
            read_idx(cut, 2)


def test_download_checksum(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"fashion" * 100)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = download_with_checksum(src.as_uri(), tmp_path / "dl" / "a.bin", sha)
    assert dest.read_bytes() == src.read_bytes()
    with pytest.raises(ValueError, match="checksum mismatch"):
        download_with_checksum(src.as_uri(), tmp_path / "dl" / "b.bin", "0" * 64)
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["a.bin"]


# ---------------------------------------------------------------- plots

def test_plots_written_as_png(tmp_path):
    torch.manual_seed(0)
    model = build_model("cnn1", (1, 8, 8), 10)
    hist = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "val_accuracy": 0.5 + e / 10} for e in (1, 2, 3)]
    paths = write_training_plots(tmp_path, hist, model, np.eye(10, dtype=int) * 5)
    assert {p.name for p in paths} == {"curves.png", "filters.png", "confusion.png"}
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_filter_mosaic_tiles_each_filter_on_its_own_scale():
    """The filters plot is one image: each filter scaled to [0, 1] by itself (a constant one to
    0), in rows of ``cols`` with one blank (NaN) pixel between and around them."""
    filters = np.stack([np.arange(9.0).reshape(3, 3), -np.arange(9.0).reshape(3, 3) * 5, np.full((3, 3), 2.0)])
    mosaic = filter_mosaic(filters, cols=2)
    assert mosaic.shape == (2 * 4 + 1, 2 * 4 + 1)
    np.testing.assert_allclose(mosaic[1:4, 1:4], np.arange(9.0).reshape(3, 3) / 8)
    np.testing.assert_allclose(mosaic[1:4, 5:8], 1 - np.arange(9.0).reshape(3, 3) / 8)
    np.testing.assert_array_equal(mosaic[5:8, 1:4], 0)
    assert np.isnan(mosaic[5:8, 5:8]).all() and np.isnan(mosaic[0]).all() and np.isnan(mosaic[:, 4]).all()


def test_plots_off_writes_history_only(digits, tmp_path):
    kind = CNNKind()
    p = kind.Params(arch="fc", epochs=1, plots=False)
    fit = kind.fit(p, digits, None, ctx(0, tmp_path))
    assert [Path(a).name for a in fit.artifacts] == ["history.csv"]
    assert not list(tmp_path.glob("*.png"))


# ---------------------------------------------------------------- sweeps as ordinary plans

def _sweep_spec(tmp_path, workers, chunk_size):
    return {
        "name": "digits-sweep", "seed": 5,
        "data": {"source": "sklearn:digits", "target": "target"},
        "model": {"kind": "cnn", "epochs": 2, "batch_size": 64, "plots": False, "device": "cpu"},
        "plan": {"sweep": {"grid": {"arch": ["fc", "cnn1"], "lr": [0.003, 0.01]}, "holdout": 0.25}},
        "backend": {"name": "local", "workers": workers, "chunk_size": chunk_size},
        "output": str(tmp_path / f"w{workers}"),
    }


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sweep_leaderboard_same_on_any_worker_count(tmp_path):
    from conftest import assert_same_results
    from hpcml import run

    one = run(_sweep_spec(tmp_path, 1, 4), progress=False)
    two = run(_sweep_spec(tmp_path, 2, 1), progress=False)
    assert one.ok and two.ok and len(one.results) == 4
    timing = ["seconds_per_epoch"]
    assert_same_results(one.results.drop(columns=timing), two.results.drop(columns=timing))
    # The cnn kind ranks by the validation split and adds the notes' table; the plan's
    # held-out rows give the test accuracy of the chosen configuration only.
    board = two.summary["leaderboard"]
    assert len(board) == 4 and {r["arch"] for r in board} == {"fc", "cnn1"}
    accs = [r["val_accuracy"] for r in board]
    assert accs == sorted(accs, reverse=True) and accs[0] > 0.8
    assert {"lr", "seconds_per_epoch", "n_parameters", "val_accuracy"} <= set(board[0])
    assert "test_accuracy" not in board[0]
    assert two.summary["best"]["val_accuracy"] == accs[0] and two.summary["best"]["test_accuracy"] > 0.8


# ---------------------------------------------------------------- kill -9 and resume, through the CLI

@pytest.mark.slow
@pytest.mark.timeout(300)
def test_killed_run_resumes_from_last_epoch(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml
    from conftest import ROOT, assert_same_results, hpcml_cli
    from hpcml import run

    spec = {"name": "digits-kill", "seed": 9, "data": {"source": "sklearn:digits", "target": "target"},
            "model": {"kind": "cnn", "arch": "cnn2_dropout", "epochs": 6, "batch_size": 16, "plots": False,
                      "device": "cpu"},
            "plan": {"fit": {}}, "backend": {"name": "local", "workers": 1}, "output": str(tmp_path / "killed")}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    ckpt = tmp_path / "killed" / "artifacts" / "fit-000000" / "checkpoints" / "last.pt"
    proc = subprocess.Popen([sys.executable, "-m", "hpcml.cli", "run", str(path)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-training
        proc.wait()
    assert ckpt.exists(), "no checkpoint appeared before the deadline"
    before = torch.load(ckpt, weights_only=True)
    done = int(before["epoch"])
    assert 1 <= done < 6, f"killed at epoch {done}: too late to test a resume"

    res = hpcml_cli("run", str(path), "--resume")
    assert res.returncode == 0, res.stderr
    hist = (ckpt.parent.parent / "history.csv").read_text().splitlines()
    assert len(hist) == 7
    # The first epochs were not redone: their recorded timings are the killed run's.
    kept = [str(h["seconds"]) for h in before["history"]]
    assert [line.split(",")[-1] for line in hist[1:done + 1]] == kept
    straight = run({**spec, "output": str(tmp_path / "straight")}, progress=False)
    resumed = pd.read_parquet(tmp_path / "killed" / "results.parquet")
    assert_same_results(resumed.drop(columns=["seconds_per_epoch"]),
                        straight.results.drop(columns=["seconds_per_epoch"]))
