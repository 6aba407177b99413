"""The base config shared by every method: plain data (names and numbers), locked.

Every hyperparameter is a field; unknown fields fail (the config is locked), and the config
is dumped to `workdir/config.json` without the dataset and model fields that do not apply
to the run (jaxat/config/applicable.py). Radii and step sizes are in [0,1] pixel units.
Schedule boundaries are *fractions of training*, so `--config.num_epochs=N` rescales a
recipe instead of silently dropping its decays.
"""

from __future__ import annotations

import ml_collections

from jaxat.methods.registry import get_method_class


def base_config(method_name: str) -> ml_collections.ConfigDict:
  """The full default config for `method_name` on the embedded digits data (unlocked)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_epochs = 20
  c.batch_size = 128
  c.eval_batch_size = 256
  c.num_devices = 0  # 0 = every local device; the global batch is split over them.

  c.dataset = ml_collections.ConfigDict(dict(
      name="digits",
      source="auto",        # auto | tfds | files
      data_dir="",          # TFDS data_dir, or folder of the original files / .npz path
      val_size=0,           # held-out validation examples carved from train (seeded)
      max_train=0,          # 0 = all; else keep the first N training examples
      max_test=0,           # 0 = all; else keep the first N test examples
      test_size=1000,       # npz only: test examples carved when the file has none
      cache_dir="",         # tiny_imagenet only: folder of the decoded-JPEG cache ('' = data folder)
      # synthetic only:
      num_train=512, num_test=128, image_size=8, channels=1, num_classes=10,
  ))
  # Where the training set lives while training (docs/scaling.md#host-streamed-input-and-extra-data):
  # 'device' = whole on every device; 'host' = in host memory, each step's batch built on
  # the host (each process gathering its own devices' rows). The same bits either way.
  c.dataset.placement = "device"
  # Extra examples mixed into every batch (e.g. DDPM-generated CIFAR-10): an uncompressed
  # .npz (or a folder of .npy files), memory-mapped; needs placement='host'.
  c.dataset.extra = ml_collections.ConfigDict(dict(
      path="",              # '' = no extra data
      fraction=0.0,         # share of each global batch taken from it, in [0, 1)
  ))
  c.augment = ml_collections.ConfigDict(dict(crop_padding=1, padding_mode="zero", flip=False))
  c.model = ml_collections.ConfigDict(dict(
      name="small_cnn", activation="relu", normalization="none", final_bn=True,
      depth=28, width=10, channels=(32, 64), batch_norm=True,
      dtype="auto"))        # float32 | bfloat16 | auto (bf16 on TPU; docs/mixed_precision.md)
  c.optimizer = ml_collections.ConfigDict(dict(
      momentum=0.9, nesterov=False, weight_decay=5e-4, grad_clip_norm=0.0))
  c.schedule = ml_collections.ConfigDict(dict(
      name="piecewise",     # constant | piecewise | multistep | onecycle | cyclic
      lr_max=0.1,
      boundaries=(0.5, 0.75),  # fractions of training (piecewise / multistep)
      decay_factor=0.1,
      per_epoch=False,      # multistep: evaluate at epoch starts (TRADES/MART/ANCRA style)
      pct_start=0.25,       # onecycle: warm-up fraction; cyclic: fraction spent going up
      div_factor=25.0,      # onecycle: initial lr = lr_max / div_factor
      final_div_factor=1e4,  # onecycle: final lr = initial lr / final_div_factor
      cycle_momentum=False,  # onecycle: cycle momentum max -> base -> max (PyTorch's default
                             # True); False keeps optimizer.momentum (docs/baselines.md#one-cycle-momentum)
      base_momentum=0.85,    # onecycle + cycle_momentum: momentum at the lr peak
      max_momentum=0.95,     # onecycle + cycle_momentum: momentum at the start and the end
  ))
  c.ema = ml_collections.ConfigDict(dict(decay=0.0))  # 0 = off; e.g. 0.995
  c.method = get_method_class(method_name).default_config()
  c.eval = ml_collections.ConfigDict(dict(
      every_epochs=1,       # clean + PGD evaluation on test (and validation) every N epochs
      eps=8 / 255,
      step_size=2 / 255,
      pgd_steps=20,
      bn_mode="eval",
      num_test_examples=0,  # per-epoch monitor on the first N test examples; 0 = all
      final_attacks="clean,pgd20",
  ))
  c.train = ml_collections.ConfigDict(dict(
      overfitting_guard="off",  # off | warn | stop (jaxat/train/overfitting_guard.py)
      guard_examples=512,       # fixed training images probed by PGD after every epoch
      guard_pgd_steps=5,        # PGD steps of the probe (eval.eps, eval.step_size)
      guard_drop=0.2,           # collapse = probe accuracy fell by more than this since the last epoch
      guard_gap=0.1,            # ... or the training attack's accuracy exceeds the probe's by more (1 = off)
  ))
  c.checkpoint = ml_collections.ConfigDict(dict(keep=2))
  c.log = ml_collections.ConfigDict(dict(progress="auto"))  # auto | bar | plain | none
  return c
