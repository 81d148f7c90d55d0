import math

import pytest

from lightning_modules.components.schedules import momentum_at, warmup_cosine


def test_warmup_is_linear_then_cosine_to_min():
    assert warmup_cosine(0, 10, 110) == 0.0
    assert warmup_cosine(5, 10, 110) == pytest.approx(0.5)
    assert warmup_cosine(10, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110) == pytest.approx(0.5)  # half-way through the cosine
    assert warmup_cosine(110, 10, 110) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(500, 10, 110, min_ratio=0.1) == pytest.approx(0.1)
    assert warmup_cosine(0, 0, 100) == pytest.approx(1.0)


def test_monotone_after_warmup():
    vals = [warmup_cosine(s, 5, 50) for s in range(5, 51)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))


def test_momentum_schedules():
    assert momentum_at(7, 100, base=0.99) == 0.99
    assert momentum_at(0, 100, 0.996, 1.0, "cosine") == pytest.approx(0.996)
    assert momentum_at(50, 100, 0.996, 1.0, "cosine") == pytest.approx(0.998)
    assert momentum_at(100, 100, 0.996, 1.0, "cosine") == pytest.approx(1.0)
    assert math.isclose(momentum_at(200, 100, 0.9, 1.0, "cosine"), 1.0)
    with pytest.raises(ValueError):
        momentum_at(0, 1, schedule="linear")
