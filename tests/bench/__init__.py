"""Side-by-side CPU benchmarks (`make bench`): each `bench_*.py` module exposes `rows() -> list[dict]`.

Row keys: benchmark, a_name, a_value, b_name, b_value, unit, ratio, target. `a` is the reference, `b` ours,
ratio = a_value / b_value, and `target` is a condition on the ratio such as ">= 10" (or None). A row may carry
`met` (bool) to override the evaluation of `target`.
"""
