"""Does a run collapse in its first epochs? Trains a config step by step through the
engine's step function and reports, after `--steps` steps, the largest training loss, the
clean test accuracy (eval-mode BatchNorm), how many classes the model still predicts and
the share of active penultimate features (ReLU outputs > 0) on the first 1000 test images.

Used for the UIAT BatchNorm-mode measurement in the README ("UIAT BatchNorm mode
(measured)"): 3 seeds x {eval, train} for the attack and inverse passes.

  python benchmarks/bn_collapse.py --config=configs/uiat.py:cifar10_subset \\
      --config.model.name=small_cnn --config.num_epochs=10 --config.schedule.lr_max=0.02 \\
      --config.seed=0 --config.method.attack.bn_mode=eval --config.method.inverse.bn_mode=eval \\
      --steps=56 --tag=uiat_eval_eval --out=benchmarks/results/uiat_bn_collapse.json

Each call appends one record (with the machine) to the JSON list in `--out`.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from machine import describe_machine  # noqa: E402
from jaxat import xla_cpu  # noqa: E402
from jaxat.train.experiment import build_experiment, epoch_permutation_fn, init_state, put_train_data  # noqa: E402
from jaxat.train.step import build_step_fn  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "A jaxat config file (with :arg).")
flags.DEFINE_integer("steps", 56, "Training steps to run.")
flags.DEFINE_string("tag", "", "A name for this run in the results.")
flags.DEFINE_string("out", "", "JSON file to append the record to ('' = print only).")


def main(_):
  config = FLAGS.config
  exp = build_experiment(config)
  state = init_state(exp)
  images, labels = put_train_data(exp)
  permutation_of = epoch_permutation_fn(exp)
  step_fn = xla_cpu.jit(build_step_fn(exp.method, exp.ctx, exp.tx, config, exp.mesh, exp.schedule))
  test_x = jnp.asarray(exp.test.images[:1000], jnp.float32) / 255.0
  test_y = np.asarray(exp.test.labels[:1000])
  losses = []
  for step in range(FLAGS.steps):
    state, metrics = step_fn(state, images, labels, permutation_of(step // exp.ctx.steps_per_epoch))
    losses.append(float(metrics["loss"]))
  logits, features, _ = exp.model(state.params, state.batch_stats, test_x, "eval")
  predictions = np.asarray(logits).argmax(-1)
  record = {
      "tag": FLAGS.tag, "seed": config.seed, "steps": FLAGS.steps,
      "attack_bn_mode": config.method.attack.bn_mode,
      "inverse_bn_mode": config.method.get("inverse", {}).get("bn_mode"),
      "max_loss": round(max(losses), 2), "last_loss": round(losses[-1], 2),
      "test_clean_acc_eval_bn": round(float(np.mean(predictions == test_y)), 3),
      "distinct_predictions": int(len(np.unique(predictions))),
      "live_features": round(float(np.mean(np.asarray(features) > 0)), 3),
      "loss_every_7": [round(v, 2) for v in losses[::7]],
  }
  print(json.dumps(record))
  if FLAGS.out:
    records = json.load(open(FLAGS.out)) if os.path.exists(FLAGS.out) else []
    records.append({**record, "machine": describe_machine()})
    with open(FLAGS.out, "w") as f:
      json.dump(records, f, indent=1)


if __name__ == "__main__":
  app.run(main)
