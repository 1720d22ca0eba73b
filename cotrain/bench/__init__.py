"""Benchmark registry (what to evaluate) and the evaluation harness (how).

``registry``: :class:`Benchmark` and name / YAML resolution; ``public``: the public RS benchmarks
read from their standard files; ``harness``: requests -> backend -> cached per-sample scores ->
metrics -> report.
"""
