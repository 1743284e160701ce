"""A run's report: ``report.html`` in its run directory, one self-contained page.

Everything a person looks at after a run, on one page that opens from disk with no server and
no network: the spec, the summary tables (bootstrap intervals, ``summary(lm/glm)``, CV folds,
the leaderboard, loadings...), every plot (embedded as data URIs), the failures with their
errors, the task timings, the versions. Written at the end of every run and rebuilt by
``hpcml report RUN``; it is read from the run directory's own files, so it always shows what
the directory holds.
"""
from __future__ import annotations

import base64
import datetime
import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from hpcml.files import atomic_write_bytes
from hpcml.rundir.store import RunStore

REPORT = "report.html"
TABLE_ROWS = 200  # of one summary table shown; the page says how many more summary.json holds
FAILURES = 50

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;padding:1.5em;
color:#1d232a;line-height:1.45}
h1{margin-bottom:.1em}.sub{color:#5b6570;margin-top:0}nav a{margin-right:1em}
h2{border-bottom:1px solid #d7dde3;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:.9em;margin:.6em 0;display:block;overflow-x:auto}
th,td{border:1px solid #d7dde3;padding:.25em .6em;text-align:right;white-space:nowrap}
th{background:#f1f4f7}td.text,th.text{text-align:left}
td.error{text-align:left;white-space:pre-wrap;font-family:ui-monospace,monospace;max-width:60em}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}
figure img{max-width:100%;border:1px solid #e3e8ed}figcaption{color:#5b6570;font-size:.85em}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:.85em}
.ok{color:#1a7f37}.bad{color:#cf222e}.note{background:#fff8c5;padding:.4em .7em;border-radius:4px}
"""

# After load, the page records how many of its images the browser could show (a check a
# headless browser reads back; a person never sees it).
CHECK = """
<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var shown = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-images", shown + "/" + imgs.length);
});
</script>
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: Any) -> tuple[str, str]:
    """(text, css class) of a table cell: numbers right-aligned to 6 significant digits."""
    if isinstance(value, bool) or value is None:
        return ("" if value is None else str(value)), "text"
    if isinstance(value, (int, float)):
        return (f"{value:.6g}" if isinstance(value, float) else str(value)), ""
    if isinstance(value, (dict, list)):
        return json.dumps(value), "text"
    return str(value), "text"


def html_table(rows: list[dict[str, Any]], limit: int = TABLE_ROWS, error_column: str | None = None) -> str:
    """Rows of mappings as an HTML table (columns in first-seen order)."""
    if not rows:
        return ""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th class=\"text\">{_e(c)}</th>" if c in ("task_id", "error", "output", "value", "", "package", "version") else f"<th>{_e(c)}</th>"
                   for c in columns)
    body = []
    for row in rows[:limit]:
        cells = []
        for c in columns:
            text, cls = _cell(row.get(c))
            cls = "error" if c == error_column else cls
            cells.append(f"<td class=\"{cls}\">{_e(text)}</td>" if cls else f"<td>{_e(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p>{len(rows) - limit} more rows in summary.json</p>" if len(rows) > limit else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _summary_section(summary: dict[str, Any]) -> str:
    parts = []
    for note in summary.get("notes", []):
        parts.append(f"<p class=\"note\">{_e(note)}</p>")
    parts.append(html_table(summary.get("table", [])))
    # Every other part of the summary: lists of rows and mappings of rows as tables of their
    # own, everything else (the chosen setting, the metric, thresholds) in one table of facts.
    skip = {"table", "notes", "run", "name", "plan", "model"}
    facts = []
    for key, value in summary.items():
        if key in skip:
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            parts.append(f"<h3>{_e(key)}</h3>" + html_table(value))
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            parts.append(f"<h3>{_e(key)}</h3>" + html_table([{"": k, **v} for k, v in value.items()]))
        else:
            facts.append({"": key, "value": value})
    if facts:
        parts.insert(len(summary.get("notes", [])) + 1, html_table(facts))
    return "".join(parts)


def _plots_section(plot_dir: Path) -> str:
    figures = []
    for png in sorted(plot_dir.glob("*.png")) if plot_dir.is_dir() else []:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        figures.append(f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{_e(png.stem)}\">"
                       f"<figcaption>{_e(png.name)}</figcaption></figure>")
    return "".join(figures) or "<p>No plots (a run with --no-plots, or no plot for this plan and model).</p>"


def _failures_section(results: pd.DataFrame | None) -> str:
    if results is None or "status" not in results:
        return "<p>No results yet.</p>"
    failed = results.loc[results["status"] != "ok"]
    if failed.empty:
        return "<p class=\"ok\">Every task succeeded.</p>"
    rows = [{"task_id": r.get("task_id"), "attempt": r.get("attempt"), "error": r.get("error")}
            for r in failed.head(FAILURES).to_dict("records")]
    more = f"<p>{len(failed) - FAILURES} more failed tasks: <code>hpcml status</code> lists them.</p>" \
        if len(failed) > FAILURES else ""
    return f"<p class=\"bad\">{len(failed)} task(s) failed.</p>" + html_table(rows, error_column="error") + more


def _timings_section(results: pd.DataFrame | None, run: dict[str, Any]) -> str:
    facts = [{"": "wall clock of the run (s)", "value": run.get("seconds")},
             {"": "backend", "value": run.get("backend")}]
    parts = []
    if results is not None and "seconds" in results and len(results):
        s = pd.to_numeric(results["seconds"], errors="coerce").dropna()
        facts += [{"": "task seconds, total", "value": float(s.sum())}, {"": "task seconds, mean", "value": float(s.mean())},
                  {"": "task seconds, median", "value": float(s.median())}, {"": "task seconds, max", "value": float(s.max())}]
        slow = results.assign(seconds=pd.to_numeric(results["seconds"], errors="coerce")).nlargest(5, "seconds")
        parts.append("<h3>slowest tasks</h3>" + html_table(slow[["task_id", "status", "seconds"]].to_dict("records")))
    return html_table([f for f in facts if f["value"] is not None]) + "".join(parts)


def render(store: RunStore) -> str:
    """The report page of the run directory ``store`` as it is now."""
    spec = store.read_spec()
    summary = store.read_summary() or {}
    # Only the columns the page shows, read as Arrow: a run of a million tasks stays cheap.
    table = store.consolidated(["task_id", "status", "attempt", "error", "seconds"])
    results = table.to_pandas() if table is not None else None
    run = summary.get("run", {})
    versions_file = store.path / "versions.json"
    versions = json.loads(versions_file.read_text()) if versions_file.is_file() else {}
    name = spec.get("name", store.path.name)
    plan = summary.get("plan") or next(iter(spec.get("plan", {}) or {}), "")
    model = summary.get("model") or (spec.get("model") or {}).get("kind", "")
    tasks, failed = run.get("tasks", "?"), run.get("failed", "?")
    state = "finished" if summary else "not finished (rerun with --resume to complete it)"
    written = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    sections = [("summary", "Summary", _summary_section(summary) if summary else "<p>No summary yet.</p>"),
                ("plots", "Plots", _plots_section(store.path / "plots")),
                ("failures", "Failures", _failures_section(results)),
                ("timings", "Timings", _timings_section(results, run)),
                ("spec", "Spec", f"<pre>{_e(json.dumps(spec, indent=2))}</pre>"),
                ("versions", "Versions", html_table([{"package": k, "version": v} for k, v in versions.items()]))]
    nav = "".join(f"<a href=\"#{key}\">{title}</a>" for key, title, _ in sections)
    body = "".join(f"<section id=\"{key}\"><h2>{title}</h2>{content}</section>" for key, title, content in sections)
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>hpcml: {_e(name)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{_e(name)}</h1><p class=\"sub\">{_e(plan)} / {_e(model)} &middot; {_e(tasks)} tasks, "
            f"{_e(failed)} failed &middot; {_e(state)} &middot; {_e(store.path.resolve())} &middot; "
            f"report written {_e(written)}</p><nav>{nav}</nav>{body}{CHECK}</body></html>")


def write_report(run_dir: str | Path) -> Path:
    """Write (atomically) and return ``RUN_DIR/report.html``."""
    store = RunStore(run_dir)
    path = store.path / REPORT
    atomic_write_bytes(path, render(store).encode("utf-8"))
    return path
