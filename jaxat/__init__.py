"""jaxat: adversarial training and robustness evaluation of image classifiers in JAX.

Package map (one module, one job):
  data/     data sources (embedded digits, synthetic, TFDS, original files) and the
            on-device batching/augmentation pipeline.
  models/   Flax classifiers returning (logits, penultimate features).
  attacks/  pure attack pieces (losses, inits, steps, projections) and drivers.
  methods/  training methods as compositions of roles (budget, init, maximiser, target,
            outer loss, weight perturbation).
  train/    train state, optimiser and schedules, sharded step, checkpoints, the loop.
  eval/     accuracy and robustness evaluation used by training and by the CLI.
  interop/  PyTorch/RobustBench export and import (key tables, layouts, generated code).
  reports/  run comparison: Markdown tables and plots behind `python -m jaxat.report`.
"""

__version__ = "0.1.0"

# Before jax creates its CPU client: the heaps of its worker threads are sized when the
# threads first allocate (jaxat/host_memory.py).
from jaxat import host_memory as _host_memory  # noqa: E402

_host_memory.retain_freed_memory()
