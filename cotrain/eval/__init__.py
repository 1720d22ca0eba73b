"""Evaluation: what to evaluate (``registry``: ``Benchmark``, names and YAML files; ``public``:
public RS benchmarks read from their standard files, registering themselves on import), how
(``harness``: requests -> backend -> cached per-sample scores -> metrics -> report; ``scoring``:
per-sample scores and per-benchmark summaries) and how it reads (``summary``: headline keys and
Markdown tables). ``training`` evaluates inside a training run.
"""

from cotrain.eval import public as _public  # noqa: F401  (registers the public sets with the registry)
