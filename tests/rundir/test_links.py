"""A run directory's entries that are symbolic links are never written through."""
from __future__ import annotations

import pytest

import hpcml
from hpcml.errors import SpecError

from conftest import small_spec


def test_a_symlinked_plots_directory_is_never_written_through(tmp_path):
    spec = small_spec(tmp_path, plan={"bootstrap": {"replicates": 6}}, backend={"name": "local", "workers": 1})
    first = hpcml.run(spec, progress=False)
    run = tmp_path / "run"
    assert first.ok and any((run / "plots").glob("*.png"))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for png in (run / "plots").iterdir():
        png.unlink()
    (run / "plots").rmdir()
    (run / "plots").symlink_to(outside)
    for name in ("results.parquet", "summary.json"):  # the run is finished again on resume
        (run / name).unlink()
    with pytest.raises(SpecError) as err:
        hpcml.run(spec, progress=False, resume=True)
    assert str(err.value).startswith("output:") and "plots" in str(err.value) and "symbolic link" in str(err.value)
    assert not any(outside.iterdir()), "written through the link"


def test_plots_are_never_saved_through_a_link(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hpcml.report.plots import save

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "plots").symlink_to(outside)
    fig = plt.figure()
    with pytest.raises(ValueError, match="symbolic link"):
        save(fig, tmp_path / "plots" / "a.png")
    plt.close(fig)
    assert not any(outside.iterdir())
