"""Experiment tracking of a finished run (``tracking: {mlflow: {...}}``), called by ``finish``.

One MLflow run per hpcml run, in the experiment named by the spec (default: the job's name):
the spec flattened as parameters, the summary's numbers as metrics, ``results.parquet``,
``summary.json``, ``spec.json`` and the plots as artifacts. A sweep's tasks become child runs
(their grid point as parameters, their outputs as metrics); a task's per-epoch history
(``artifacts/<task>/history.csv``, the cnn kind's) becomes metric steps, and its PNGs artifacts.
Tracking never costs a result: any failure is one warning.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd

from hpcml.rundir.paths import task_folder

log = logging.getLogger("hpcml")
DB_NAME = "mlflow.db"
HISTORY_METRICS = ("train_loss", "val_loss", "val_accuracy", "lr", "seconds")


def store_uris(uri: str) -> tuple[str, str | None]:
    """(tracking URI, artifact location of new experiments) for the spec's ``uri``.

    A URI with a scheme (``sqlite:``, ``http(s):``, ``databricks``, ``file:``) is used as
    given. A bare directory (the default ``./mlruns``) holds a SQLite store, ``mlflow.db``,
    and the artifacts under ``artifacts/``: MLflow 3 keeps its plain-file store for
    existing data only.
    """
    if "://" in uri or uri.startswith(("file:", "sqlite:", "databricks")):
        return uri, None
    root = Path(uri).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / DB_NAME}", (root / "artifacts").as_uri()


def _mapping(value: Any) -> Any:
    """A grid value as the sweep ran it: a mapping kept as JSON text in its column (results
    written before mappings had a column per key) is a mapping again."""
    if isinstance(value, str) and value.startswith("{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _empty(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys; lists and other leaves kept as they are."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def summary_metrics(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary's numbers as metric names: nested keys dotted, and each row of a ``table``
    keyed by its ``output`` or ``term`` (``age.se``, ``(Intercept).estimate``)."""
    out = {k: v for k, v in flatten({k: v for k, v in summary.items() if k != "table"}).items()
           if not isinstance(v, (list, str))}
    for row in summary.get("table") or []:
        label = row.get("output", row.get("term")) if isinstance(row, dict) else None
        if label is not None:
            out.update({f"{label}.{k}": v for k, v in row.items() if k not in ("output", "term")})
    return {"".join(c if c.isalnum() or c in "_-. /" else "_" for c in k): v for k, v in out.items()}


def _params(mapping: dict[str, Any]):
    from mlflow.entities import Param

    return [Param(k, str(v)[:6000]) for k, v in mapping.items() if v is not None]


def _metrics(mapping: dict[str, Any], step: int = 0, now: int | None = None):
    from mlflow.entities import Metric

    now = now if now is not None else int(time.time() * 1000)
    return [Metric(k, f, now, step) for k, v in mapping.items() if (f := _number(v)) is not None]


def _log_batch(client, run_id: str, metrics=(), params=()) -> None:
    metrics, params = list(metrics), list(params)
    for i in range(0, max(len(metrics), len(params)), 100):  # MLflow takes at most 100 params a batch
        client.log_batch(run_id, metrics=metrics[i:i + 100], params=params[i:i + 100])


def _history(client, run_id: str, task_dir: Path) -> set[str]:
    """The task's epochs as steps of its metrics; the names logged."""
    path = task_dir / "history.csv"
    if not path.is_file():
        return set()
    frame = pd.read_csv(path)
    now = int(time.time() * 1000)
    metrics = [m for _, row in frame.iterrows()
               for m in _metrics({k: row[k] for k in HISTORY_METRICS if k in row}, int(row.get("epoch", 0)), now)]
    _log_batch(client, run_id, metrics=metrics)
    return {m.key for m in metrics}


def _task_artifacts(client, run_id: str, task_dir: Path) -> None:
    for png in sorted(task_dir.glob("*.png")):
        client.log_artifact(run_id, str(png))
    if (task_dir / "history.csv").is_file():
        client.log_artifact(run_id, str(task_dir / "history.csv"))


def _task_dir(run_dir: Path, task_id: str) -> Path:
    return run_dir / task_folder(task_id)


def log_run(job, run_dir: Path, results: pd.DataFrame, summary: dict[str, Any]) -> str | None:
    """Log the finished run to MLflow; its run id (None when the spec asks for no tracking)."""
    opts = job.spec.tracking.mlflow if job.spec.tracking is not None else None
    if opts is None:
        return None
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # not its database set-up chatter
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri, artifacts = store_uris(opts.uri)
    client = MlflowClient(tracking_uri=uri)
    name = opts.experiment or job.spec.name
    experiment = client.get_experiment_by_name(name)
    exp_id = (experiment.experiment_id if experiment is not None
              else client.create_experiment(name, artifact_location=artifacts and f"{artifacts}/{name}"))
    tags = {"hpcml.run_dir": str(Path(run_dir).resolve()), "hpcml.plan": job.plan_kind,
            "hpcml.model": job.model.name, "hpcml.backend": job.spec.backend.name}
    parent = client.create_run(exp_id, run_name=f"{job.spec.name}", tags=tags).info.run_id
    failed = int(summary.get("run", {}).get("failed", 0))
    try:
        spec = job.spec.model_dump(mode="json", exclude_none=True)
        _log_batch(client, parent, params=_params(flatten(spec)),
                   metrics=_metrics(summary_metrics(summary)))
        for fname in ("results.parquet", "summary.json", "spec.json"):
            if (run_dir / fname).is_file():
                client.log_artifact(parent, str(run_dir / fname))
        if (run_dir / "plots").is_dir():
            client.log_artifacts(parent, str(run_dir / "plots"), "plots")
        ok = results.loc[results["status"] == "ok"] if "status" in results else results
        if job.plan.compares_settings and opts.child_runs:
            _child_runs(client, exp_id, parent, job, ok, run_dir)
        elif len(ok) == 1:  # one training (fit): its epochs are the run's own steps
            task_dir = _task_dir(run_dir, str(ok.iloc[0]["task_id"]))
            _history(client, parent, task_dir)
            _task_artifacts(client, parent, task_dir)
    except BaseException:
        client.set_terminated(parent, status="FAILED")
        raise
    client.set_terminated(parent, status="FAILED" if failed else "FINISHED")
    return parent


def _child_runs(client, exp_id: str, parent: str, job, ok: pd.DataFrame, run_dir: Path) -> None:
    # The plan's own columns (a sweep's repeat) are parameters of the child run, not metrics.
    own = list(job.plan.records)
    skip = {"task_index", "attempt", "seconds", "world_size", *own}
    for _, row in ok.iterrows():
        # param_arch_params.c1 and the like: a mapping's keys, one column each; a key this
        # grid point's mapping lacks is empty in its row and no parameter of the child run.
        grid = {k[len("param_"):]: _mapping(row[k]) for k in row.index if k.startswith("param_") and not _empty(row[k])}
        # A mapping of the grid key by key, as progress lines and TensorBoard name it (arch_params.c1=8).
        label = ", ".join(f"{k}={v}" for k, v in flatten(grid).items()) or str(row["task_id"])
        child = client.create_run(exp_id, run_name=label, tags={"mlflow.parentRunId": parent,
                                                                "hpcml.task_id": str(row["task_id"])}).info.run_id
        task_dir = _task_dir(run_dir, str(row["task_id"]))
        stepped = _history(client, child, task_dir)  # per epoch; the last step is the final value
        outputs = {k: row[k] for k in row.index if not k.startswith("param_") and k not in skip | stepped}
        _log_batch(client, child, params=_params({**flatten(grid), **{c: row.get(c) for c in own}}),
                   metrics=_metrics(outputs))
        _task_artifacts(client, child, task_dir)
        client.set_terminated(child, status="FINISHED")
