"""The `table1` config token: every method of the UIAT paper's Table 1 on UIAT's recipe.

The paper (Dong et al., CVPR 2023, Appendix A.2) trains every row of its Table 1 as a
ResNet-18 under one recipe, while each baseline's own preset in jaxat follows that
baseline's official code (WRN-34-10 for TRADES/MART, PreAct ResNet-18 for 200 epochs for
PGD-AT/AWP, ...). `configs/<method>.py:<dataset>,table1` puts the method on the shared
recipe so the rows compare like for like:

- ResNet-18 on raw [0,1] inputs; SGD with Nesterov momentum 0.9, weight decay 5e-4;
  batch 128; one-cycle lr with maximum 0.1 (pct_start 0.25, div 25, final div 1e4);
  100 epochs (SVHN 30; cifar10_subset 30 with its 500-image validation split);
- the training attack: 10 steps of 2/255 (SVHN 1/255) inside ε = 8/255; everything else
  of the attack (start, objective, BatchNorm mode) and of the loss (β, λ, γ, ...) stays the
  method's own;
- the final model is reported (no validation split on the full datasets), PGD-10 monitor
  on 1000 test images.

Only the real datasets have a Table 1; `table1` with digits or synthetic is refused.
UIAT, one-off UIAT and IAT train on this recipe by default (jaxat/config/inverse_recipe.py
calls `apply_table1_recipe` and adds UIAT's own λ for SVHN).
"""

from __future__ import annotations

import ml_collections

from jaxat.config import presets

TABLE1_TOKEN = "table1"
TABLE1_DATASETS = ("cifar10", "cifar100", "svhn", "cifar10_subset")


def apply_table1_recipe(c: ml_collections.ConfigDict, dataset: str) -> None:
  """Puts `c` on the shared Table 1 recipe (module docstring)."""
  if dataset not in TABLE1_DATASETS:
    raise ValueError(f"config arg token 'table1' needs a dataset of the paper's Table 1, got "
                     f"{dataset!r}; valid choices: {', '.join(TABLE1_DATASETS)}")
  c.model.update(name="resnet18", normalization="none")
  c.num_epochs = 30 if dataset == "svhn" else 100
  c.batch_size = 128
  c.eval_batch_size = 500
  c.optimizer.update(momentum=0.9, nesterov=True, weight_decay=5e-4)
  c.schedule.update(name="onecycle", lr_max=0.1, pct_start=0.25, div_factor=25.0,
                    final_div_factor=1e4)
  c.dataset.val_size = 0
  c.eval.update(eps=8 / 255, step_size=2 / 255, pgd_steps=10, num_test_examples=1000)
  if "attack" in c.method:
    c.method.attack.update(eps=8 / 255, step_size=(1 if dataset == "svhn" else 2) / 255,
                           num_steps=10)
  if dataset == "cifar10_subset":
    presets.apply_subset_budget(c)
