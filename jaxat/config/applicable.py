"""Which fields of a config apply to a run, so that `workdir/config.json` shows only those.

The in-memory config keeps the fields of every dataset and model, so command-line
overrides work whatever the preset (`--config.dataset.name=npz` on the digits preset still
finds `dataset.test_size`). Only the dump drops what the chosen dataset and model never
read: a CIFAR-10-subset run does not carry the synthetic data's image size or the small
CNN's channels. Restoring a run from its config.json (jaxat/train/restore.py) works with
the dropped fields absent, because the data and model builders read a field only for the
dataset or model it belongs to.

Likewise an attack sub-config keeps the settings of every budget role in memory
(`attack.ecas`, jaxat/methods/maximizer.py), and the dump keeps them only for the role the
attack uses: a fixed-budget run has no `ecas` section. The methods read `attack.ecas` only
when `attack.budget == 'ecas'`.

A config.json written before `model.dtype` existed reads as `model.dtype='auto'`
(MODEL_FIELDS_ADDED; docs/mixed_precision.md#older-runs), so such a run still resumes.
"""

from __future__ import annotations

import copy
from typing import Any

from jaxat.models.registry import MODEL_DTYPE_IF_ABSENT

# Dataset fields read by a single dataset (jaxat/data/registry.py, load_dataset).
DATASET_ONLY_FIELDS = {
    "synthetic": ("num_train", "num_test", "image_size", "channels", "num_classes"),
    "npz": ("test_size",),
    "tiny_imagenet": ("cache_dir",),
}
# The generated datasets need no files, so where to find them does not apply.
GENERATED_DATASETS = ("digits", "synthetic")
FILE_LOCATION_FIELDS = ("source", "data_dir")

# Model fields read by a single architecture (jaxat/models/registry.py, create_model).
MODEL_ONLY_FIELDS = {
    "small_cnn": ("channels", "batch_norm"),
    "preact_resnet18": ("final_bn",),
    "wide_resnet": ("depth", "width"),
}


def _fields_of_others(table: dict[str, tuple[str, ...]], chosen: str) -> set[str]:
  """Fields that belong only to entries of `table` other than `chosen`."""
  own = set(table.get(chosen, ()))
  return {field for name, fields in table.items() if name != chosen for field in fields} - own


def inapplicable_dataset_fields(dataset_name: str) -> set[str]:
  fields = _fields_of_others(DATASET_ONLY_FIELDS, dataset_name)
  if dataset_name in GENERATED_DATASETS:
    fields |= set(FILE_LOCATION_FIELDS)
  return fields


# Model fields added after runs were written, and the values such a run reads them as (the
# default config's values: the run resumes under the current default config).
MODEL_FIELDS_ADDED = {"dtype": MODEL_DTYPE_IF_ABSENT}


def inapplicable_model_fields(model_name: str) -> set[str]:
  return _fields_of_others(MODEL_ONLY_FIELDS, model_name)


# Sub-configs of a budget role, kept only where `budget` names that role.
BUDGET_ROLE_FIELDS = {"ecas": "ecas"}
# Attack fields added with the budget-role selection, and the values that reproduce what an
# attack sub-config written before them did (so such a run still resumes).
ATTACK_FIELDS_ADDED = {"budget": "fixed", "final_clip_eps": 0.0}


def _is_attack_config(section: dict) -> bool:
  """A training attack sub-config (jaxat/methods/maximizer.py, attack_config)."""
  return {"ramp_epochs", "init_eps", "objective", "restarts"} <= set(section)


def drop_unused_budget_roles(section: Any) -> None:
  """Removes, in place and at any depth (AWP's flat base fields, UIAT's base_method), the
  budget-role sub-configs of attacks whose `budget` is another role; an attack written
  before `budget` existed gets the fields of ATTACK_FIELDS_ADDED with their old meaning."""
  if not isinstance(section, dict):
    return
  if _is_attack_config(section):
    for field, value in ATTACK_FIELDS_ADDED.items():
      section.setdefault(field, value)
  if "budget" in section:
    for role, field in BUDGET_ROLE_FIELDS.items():
      if section["budget"] != role:
        section.pop(field, None)
  for value in section.values():
    drop_unused_budget_roles(value)


def applicable_fields(config: dict[str, Any]) -> dict[str, Any]:
  """A copy of a config as a plain dict (the content of config.json) without the dataset
  and model fields that do not apply to its dataset and model, and without the budget-role
  settings its attacks do not use. Other sections are kept."""
  pruned = copy.deepcopy(config)
  drop_unused_budget_roles(pruned.get("method"))
  dataset = pruned.get("dataset")
  if isinstance(dataset, dict) and "name" in dataset:
    for field in inapplicable_dataset_fields(dataset["name"]):
      dataset.pop(field, None)
  if isinstance(dataset, dict) and not (dataset.get("extra") or {}).get("path"):
    dataset.pop("extra", None)   # the extra-data section only when a run uses it
  model = pruned.get("model")
  if isinstance(model, dict) and "name" in model:
    for field, value in MODEL_FIELDS_ADDED.items():
      model.setdefault(field, value)
    for field in inapplicable_model_fields(model["name"]):
      model.pop(field, None)
  return pruned
