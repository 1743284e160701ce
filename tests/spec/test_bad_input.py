"""Bad input: one line per problem naming the field and the value, exit 2, no run directory."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from hpcml.cli import app

from conftest import small_spec

runner = CliRunner()


def _csv(tmp_path, text, name="d.csv"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def _npy3(tmp_path):
    p = tmp_path / "cube.npy"
    np.save(p, np.zeros((2, 2, 2)))
    return str(p)


def _set(spec, dotted, value):
    node = spec
    *parents, leaf = dotted.split(".")
    for k in parents:
        node = node.setdefault(k, {})
    node[leaf] = value


def _del(spec, dotted):
    node = spec
    *parents, leaf = dotted.split(".")
    for k in parents:
        node = node[k]
    del node[leaf]


IRIS = {"source": "sklearn:iris", "target": "target"}
IRIS_X = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]

# (id, edit(spec, tmp_path), field, value shown)
CASES = [
    ("unknown-top-key", lambda s, t: _set(s, "colour", "blue"), "colour", "'blue'"),
    ("seed-wrong-type", lambda s, t: _set(s, "seed", "abc"), "seed", "'abc'"),
    ("seed-negative", lambda s, t: _set(s, "seed", -1), "seed", "-1"),
    ("name-bad", lambda s, t: _set(s, "name", "my run"), "name", "'my run'"),
    ("missing-file", lambda s, t: _set(s, "data.source", str(t / "nope.csv")), "data.source", "nope.csv"),
    ("unknown-sklearn-set", lambda s, t: _set(s, "data.source", "sklearn:mnist"), "data.source", "sklearn:mnist"),
    ("unknown-feature", lambda s, t: _set(s, "model.features", ["age", "height"]), "model.features", "'height'"),
    ("unknown-target", lambda s, t: _set(s, "data.target", "outcome"), "data.target", "'outcome'"),
    ("target-missing", lambda s, t: _del(s, "data.target"), "data.target", "None"),
    ("nan-in-data", lambda s, t: (_set(s, "data", {"source": _csv(t, "a,b,y\n1,2,3\n4,,6\n7,8,9\n"), "target": "y"}),
                                  _del(s, "model.features")), "data.source", "d.csv"),
    ("one-level-categorical", lambda s, t: (_set(s, "data", {"source": _csv(t, "a,b,y\n1,x,3\n4,x,6\n2,x,1\n"), "target": "y"}),
                                            _del(s, "model.features")), "model.features", "'b'"),
    ("inf-in-target", lambda s, t: (_set(s, "data", {"source": _csv(t, "a,y\n1,inf\n2,3\n3,5\n4,1\n"), "target": "y"}),
                                    _del(s, "model.features")), "data.target", "'y'"),
    ("inf-in-feature", lambda s, t: (_set(s, "data", {"source": _csv(t, "a,y\n1,2\n-inf,3\n3,5\n4,1\n"), "target": "y"}),
                                     _del(s, "model.features")), "model.features", "'a'"),
    ("empty-data", lambda s, t: (_set(s, "data", {"source": _csv(t, "a,b,y\n"), "target": "y"}),
                                 _del(s, "model.features")), "data.source", "d.csv"),
    ("npy-not-2d", lambda s, t: (_set(s, "data", {"source": _npy3(t)}), _set(s, "model", {"kind": "pca"})),
     "data.source", "cube.npy"),
    ("unknown-model", lambda s, t: _set(s, "model.kind", "xgboost"), "model.kind", "'xgboost'"),
    ("unknown-model-param", lambda s, t: _set(s, "model.k", 3), "model.k", "3"),
    ("replicates-zero", lambda s, t: _set(s, "plan", {"bootstrap": {"replicates": 0}}), "plan.bootstrap.replicates", "0"),
    ("replicates-type", lambda s, t: _set(s, "plan", {"bootstrap": {"replicates": "many"}}), "plan.bootstrap.replicates", "'many'"),
    ("two-plans", lambda s, t: _set(s, "plan", {"bootstrap": {"replicates": 3}, "cv": {"folds": 3}}), "plan", "bootstrap"),
    ("unknown-plan", lambda s, t: _set(s, "plan", {"jackknife": {}}), "plan.jackknife", "{}"),
    ("cv-folds-one", lambda s, t: _set(s, "plan", {"cv": {"folds": 1}}), "plan.cv.folds", "1"),
    ("cv-folds-over-n", lambda s, t: (_set(s, "data", {"source": _csv(t, "a,y\n1,2\n2,3\n3,5\n"), "target": "y"}),
                                      _del(s, "model.features"), _set(s, "plan", {"cv": {"folds": 5}})), "plan.cv.folds", "5"),
    ("k-over-n", lambda s, t: (_set(s, "data", dict(IRIS)), _set(s, "model", {"kind": "kmeans", "k": 1000, "features": IRIS_X})),
     "model.k", "1000"),
    ("k-zero", lambda s, t: (_set(s, "data", dict(IRIS)), _set(s, "model", {"kind": "kmeans", "k": 0})), "model.k", "0"),
    ("pca-variance", lambda s, t: _set(s, "model", {"kind": "pca", "variance": 1.5}), "model.variance", "1.5"),
    ("logistic-three-classes", lambda s, t: (_set(s, "data", dict(IRIS)), _set(s, "model", {"kind": "logistic", "features": IRIS_X})),
     "data.target", "target"),
    ("sweep-unknown-param", lambda s, t: _set(s, "plan", {"sweep": {"grid": {"alpha": [1, 2]}}}), "plan.sweep.grid.alpha", "[1, 2]"),
    ("sweep-bad-value", lambda s, t: (_set(s, "data", dict(IRIS)), _set(s, "model", {"kind": "kmeans"}),
                                      _set(s, "plan", {"sweep": {"grid": {"k": [2, -1]}}})), "plan.sweep.grid.k", "-1"),
    ("unknown-backend", lambda s, t: _set(s, "backend.name", "ray"), "backend.name", "'ray'"),
    ("workers-zero", lambda s, t: _set(s, "backend.workers", 0), "backend.workers", "0"),
    ("unknown-backend-option", lambda s, t: _set(s, "backend.turbo", True), "backend.turbo", "True"),
    ("timeout-negative", lambda s, t: _set(s, "timeout_s", -5), "timeout_s", "-5"),
    ("retries-negative", lambda s, t: _set(s, "retries", -1), "retries", "-1"),
    ("data-wrong-type", lambda s, t: _set(s, "data", "diabetes.csv"), "data", "'diabetes.csv'"),
    ("name-300-chars", lambda s, t: _set(s, "name", "n" * 300), "name", "nnnn"),
    ("features-empty", lambda s, t: _set(s, "model.features", []), "model.features", "[]"),
    ("grid-empty", lambda s, t: _set(s, "plan", {"sweep": {"grid": {}}}), "plan.sweep.grid", "{}"),
    ("timeout-inf", lambda s, t: _set(s, "timeout_s", float("inf")), "timeout_s", "inf"),
    ("replicates-bool", lambda s, t: _set(s, "plan", {"bootstrap": {"replicates": True}}), "plan.bootstrap.replicates", "True"),
    ("output-is-a-file", lambda s, t: (t.joinpath("f.txt").write_text("x"), _set(s, "output", str(t / "f.txt"))),
     "output", "f.txt"),
    ("output-under-proc", lambda s, t: _set(s, "output", "/proc/hpcml-run"), "output", "/proc/hpcml-run"),
    ("output-nul-byte", lambda s, t: _set(s, "output", str(t / "a\x00b")), "output", "\\x00"),
    ("ols-text-target", lambda s, t: (_set(s, "data", {"source": _csv(t, "a,y\n1,no\n2,yes\n3,no\n4,yes\n"), "target": "y"}),
                                      _del(s, "model.features")), "data.target", "'y'"),
    ("csv-duplicate-column", lambda s, t: (_set(s, "data", {"source": _csv(t, "a,a,y\n1,2,3\n4,5,6\n7,8,9\n"), "target": "y"}),
                                           _del(s, "model.features")), "data.source", "appears twice"),
    # Counts that would need more memory than any machine has: refused before anything is built.
    ("replicates-1e12", lambda s, t: _set(s, "plan", {"bootstrap": {"replicates": 10**12}}),
     "plan.bootstrap.replicates", "1000000000000"),
    ("cv-repeats-1e12", lambda s, t: _set(s, "plan", {"cv": {"folds": 5, "repeats": 10**12}}), "plan.cv.repeats", "1000000000000"),
    ("replicate-n-1e12", lambda s, t: _set(s, "plan", {"replicate": {"n": 10**12}}), "plan.replicate.n", "1000000000000"),
    ("shards-n-1e12", lambda s, t: _set(s, "plan", {"shards": {"n": 10**12}}), "plan.shards.n", "1000000000000"),
    ("sweep-grid-1e11", lambda s, t: (_set(s, "data", dict(IRIS)), _set(s, "model", {"kind": "kmeans", "features": IRIS_X}),
                                      _set(s, "plan", {"sweep": {"repeats": 1000, "grid": {
                                          "k": list(range(2, 102)), "n_init": list(range(1, 101)),
                                          "max_iter": list(range(1, 101)), "tol": [i / 1000 for i in range(100)]}}})),
     "plan.sweep.grid", "100000000 grid points"),
    ("synthetic-n-samples-1e10", lambda s, t: (_set(s, "data", {"source": "synthetic:regression", "target": "y",
                                                               "options": {"n_samples": 10**10, "n_features": 3}}),
                                               _del(s, "model.features")), "data.options.n_samples", "10000000000"),
    ("empty-glob", lambda s, t: _set(s, "data.source", str(t / "big" / "*.parquet")), "data.source", "*.parquet"),
    ("empty-directory", lambda s, t: (t.joinpath("big").mkdir(), _set(s, "data.source", str(t / "big"))), "data.source", "big"),
    ("workers-1e6", lambda s, t: _set(s, "backend.workers", 10**6), "backend.workers", "1000000"),
    ("dask-workers-1e6", lambda s, t: _set(s, "backend", {"name": "dask", "workers": 10**6}), "backend.workers", "1000000"),
    # Options of scikit-learn's functions are checked against their signatures.
    ("synthetic-unknown-option", lambda s, t: (_set(s, "data", {"source": "synthetic:regression", "target": "y",
                                                               "options": {"n_samplez": 100}}),
                                               _del(s, "model.features")), "data.options.n_samplez", "allowed: seed, n_samples"),
    ("sklearn-set-unknown-option", lambda s, t: _set(s, "data.options", {"scale": True}), "data.options.scale", "allowed: scaled"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("edit,field,shown", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_spec_one_line_exit_2_no_output(tmp_path, edit, field, shown):
    spec = small_spec(tmp_path)
    edit(spec, tmp_path)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = runner.invoke(app, ["run", str(path), "--quiet"])
    assert result.exit_code == 2, result.output
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert lines and all(l.startswith("error: ") for l in lines), result.output
    hit = [l for l in lines if l.startswith(f"error: {field}:")]
    assert hit, f"no line names {field!r}: {result.output}"
    assert shown in hit[0], f"value {shown!r} not shown: {hit[0]}"
    assert not (tmp_path / "run").exists(), "bad input must leave no run directory"
    # validate agrees with run
    check = runner.invoke(app, ["validate", str(path)])
    assert check.exit_code == 2 and f"error: {field}:" in check.output


def test_invalid_yaml_and_missing_spec(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nplan: [unclosed\n")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2 and result.output.startswith("error: spec:") and "not valid YAML" in result.output
    result = runner.invoke(app, ["run", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "missing.yaml" in result.output and "file not found" in result.output


@pytest.mark.parametrize("content,says", [
    (bytes(range(256)) * 4, "not"),
    (b"name: a\nname: b\n", "duplicate key 'name'"),
    (b"a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
     b"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n", "aliases"),
], ids=["binary", "duplicate-key", "alias-bomb"])
def test_spec_files_that_are_not_plain_yaml_are_one_line(tmp_path, content, says):
    path = tmp_path / "job.yaml"
    path.write_bytes(content)
    for command in ("validate", "run"):
        result = runner.invoke(app, [command, str(path)])
        lines = [l for l in result.output.splitlines() if l.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: spec:"), result.output
        assert says in lines[0], lines[0]


def test_spec_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and result.output.startswith("error: job:")


def test_existing_run_dir_needs_resume_or_overwrite(tmp_path):
    spec = small_spec(tmp_path, plan={"bootstrap": {"replicates": 4}})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert runner.invoke(app, ["run", str(path), "--quiet", "--workers", "1"]).exit_code == 0
    before = sorted(p.name for p in (tmp_path / "run" / "chunks").iterdir())
    again = runner.invoke(app, ["run", str(path), "--quiet"])
    assert again.exit_code == 2 and "error: output:" in again.output and "--resume" in again.output
    assert sorted(p.name for p in (tmp_path / "run" / "chunks").iterdir()) == before


def test_resume_with_a_different_spec_is_refused(tmp_path):
    spec = small_spec(tmp_path, plan={"bootstrap": {"replicates": 4}})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert runner.invoke(app, ["run", str(path), "--quiet", "--workers", "1"]).exit_code == 0
    changed = copy.deepcopy(spec)
    changed["seed"] = 8
    path.write_text(yaml.safe_dump(changed))
    result = runner.invoke(app, ["run", str(path), "--quiet", "--resume"])
    assert result.exit_code == 2 and "error: output:" in result.output and "seed" in result.output


def test_a_large_count_that_fits_is_accepted(tmp_path):
    # A million tasks is large but legal: only counts beyond the machine's memory are refused.
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(small_spec(tmp_path, plan={"bootstrap": {"replicates": 10**6}})))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0 and "1000000 bootstrap task(s)" in result.output, result.output


def test_options_of_scikit_learn_functions_reach_them(tmp_path):
    from hpcml.data.sources import open_table
    from hpcml.spec import DataSpec

    cols, _ = open_table(DataSpec(source="synthetic:blobs", options={"n_samples": 50, "centers": 4, "seed": 3}))
    assert cols.n == 50 and sorted(set(cols.column("y"))) == [0, 1, 2, 3]
    cols, _ = open_table(DataSpec(source="sklearn:digits", options={"n_class": 3}))
    assert sorted(set(cols.column("target"))) == [0, 1, 2]


def test_validate_ok_counts_tasks(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(small_spec(tmp_path)))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0 and "40 bootstrap task(s)" in result.output


def test_schema_is_json_schema():
    import json

    result = runner.invoke(app, ["schema"])
    schema = json.loads(result.output)
    assert result.exit_code == 0 and {"data", "model", "plan", "backend"} <= set(schema["properties"])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make", ["fifo", "link-to-dev-zero"])
def test_a_data_source_that_is_not_a_regular_file_is_one_line(tmp_path, make):
    # A FIFO blocked `validate` forever; a link to /dev/zero grew memory without bound.
    import os

    source = tmp_path / "d.csv"
    if make == "fifo":
        os.mkfifo(source)
    else:
        source.symlink_to("/dev/zero")
    spec = small_spec(tmp_path, data={"source": str(source), "target": "y"})
    spec["model"].pop("features")
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    for command in (["validate"], ["run", "--quiet"]):
        result = runner.invoke(app, [command[0], str(path), *command[1:]])
        lines = [l for l in result.output.splitlines() if l.strip()]
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert lines[0].startswith("error: data.source:") and "not a regular file" in lines[0], lines[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.timeout(60)
def test_a_spec_file_over_the_size_cap_is_one_line(tmp_path):
    # 50 MB of YAML took over 120 s and 1 GB to parse; the cap refuses it before parsing.
    from hpcml.spec import MAX_SPEC_BYTES

    spec = small_spec(tmp_path)
    spec["model"]["comment"] = "x" * (MAX_SPEC_BYTES + 10)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    for command in ("validate", "run"):
        result = runner.invoke(app, [command, str(path)])
        lines = [l for l in result.output.splitlines() if l.strip()]
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert lines[0].startswith("error: spec:") and "job.yaml" in lines[0] and "bytes" in lines[0], lines[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("column,field", [("a", "model.features"), ("y", "data.target")])
def test_a_numeric_column_with_one_text_cell_names_the_column_row_and_value(tmp_path, column, field):
    # Before, the column became 199 treatment dummies: "200 rows cannot determine 201 coefficients".
    rng = np.random.default_rng(0)
    frame = {c: [f"{v:.4f}" for v in rng.normal(size=200)] for c in ("a", "b", "y")}
    frame[column][150] = "oops"
    lines = ["a,b,y"] + [",".join(frame[c][i] for c in ("a", "b", "y")) for i in range(200)]
    spec = small_spec(tmp_path, data={"source": _csv(tmp_path, "\n".join(lines) + "\n"), "target": "y"})
    spec["model"].pop("features")
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = runner.invoke(app, ["validate", str(path)])
    out = [l for l in result.output.splitlines() if l.strip()]
    assert result.exit_code == 2 and len(out) == 1 and out[0].startswith(f"error: {field}:"), result.output
    assert "row 151" in out[0] and "'oops'" in out[0] and f"'{column}'" in out[0], out[0]
