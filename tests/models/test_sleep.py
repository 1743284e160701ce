"""The ``sleep`` kind: ``ms: 0`` is a no-op (no kernel timer, no clock), either way."""
import numpy as np
import pytest

from hpcml.models import sleep as synthetic_work
from hpcml.models.base import FitContext, get_model


class _NoClock:
    def sleep(self, s):
        raise AssertionError(f"time.sleep({s}) called for a no-op")

    def perf_counter(self):
        raise AssertionError("the clock was read for a no-op")


@pytest.mark.parametrize("busy", [False, True])
def test_zero_ms_is_a_no_op(monkeypatch, busy):
    kind = get_model("sleep")
    monkeypatch.setattr(synthetic_work, "time", _NoClock())
    params = kind.Params(ms=0, busy=busy)
    assert kind.fit(params, None, None, FitContext(rng=np.random.default_rng(0))) == 0.0
    params = kind.Params(ms=0, sigma=1.0, busy=busy)  # a lognormal draw around 0 ms is 0 ms
    assert kind.fit(params, None, None, FitContext(rng=np.random.default_rng(0))) == 0.0


def test_positive_ms_still_sleeps(monkeypatch):
    slept = []
    monkeypatch.setattr(synthetic_work.time, "sleep", slept.append)
    kind = get_model("sleep")
    assert kind.fit(kind.Params(ms=2, busy=False), None, None, FitContext(rng=np.random.default_rng(0))) == 2
    assert slept == [0.002]
