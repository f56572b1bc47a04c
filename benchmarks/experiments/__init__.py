"""The one-off experiments behind figures and choices the docs quote: not part of a run.

The runner (`benchmarks.runner`, `seiko-bench`) never imports this package;
each script here makes a table for the docs, or a helper for the timing
tests, and is run by hand from the repository's root:

    python -m benchmarks.experiments.backend_costs      # a round's cost on each backend (docs/tasks.md)
    python -m benchmarks.experiments.sampler_table      # the protein model's sampler settings (docs/tasks.md)
    python -m benchmarks.experiments.molecule_features  # the molecule tasks' reward-model features
    python -m benchmarks.experiments.dna_features       # the DNA tasks' reward-model features

`--help` gives each one's options. The other modules are imported, not run:
`yardstick` (the reference workload that timings are divided by,
`benchmarks/test_hot_ops.py`, `benchmarks/test_backend_costs.py`), `tiny_sd`
(Stable Diffusion components with random weights, for `backend_costs` and the
`tiny_sd` fixture of tests/domains/conftest.py) and `ranking` (the held-out
Spearman that both feature tables report).

Like the runner, they reach the domains through `domains.tasks` (`get_task`,
`list_tasks`, `TaskRef`) and the `Task` it returns, so that a change inside a
domain breaks them only where the task's public face changes; the two feature
tables also read a domain's shipped pretraining designs, which no `Task` field
gives as a pool to draw from without replacement (see each import).
"""
