"""Comparing finished runs without reading JSON: `python -m jaxat.report RUN [RUN...]`.

  runs.py    a run directory read into one record (config, metrics per epoch, accuracies)
  tables.py  Markdown tables: one row per run, or mean ± std over runs of a group (seeds)
  plots.py   PNG curves: accuracy, loss and learning rate per epoch; robust accuracy vs eps
"""
