r"""FGSM with a random start, "fast adversarial training" (Wong, Rice & Kolter, ICLR 2020).
Docs: docs/fast_adversarial_training.md#fgsm-rs.

Per batch (L∞, pixel units in [0,1]):

  η     ~ U(−ε, ε) per element,  x_0 = Π_img(x + η)
  g     = ∇_x CE(f(x_0), y)                    model in train-mode BatchNorm
  x_adv = Π_img(Π_ε(x_0 + α·sign(g))),  α = 1.25·ε (10/255 at ε = 8/255)
  loss  = CE(f(x_adv), y)                      batch mean, train-mode BatchNorm

where Π_ε clips x_adv − x to [−ε, ε] and Π_img clips to [0, 1]. Official behaviour
(locuslab/fast_adversarial, CIFAR10/train_fgsm.py), the default here: the model stays in
train mode during the attack, so the attack pass updates the BatchNorm running statistics;
the random start is clipped to the image before the gradient; the training recipe is
PreAct ResNet-18 with the final BN+ReLU, inputs normalised with the CIFAR-10 mean/std
(inside the model here, the attack works in pixel space, which is the official ε/std per
channel), 15 epochs, batch 128, SGD momentum 0.9, weight decay 5e-4, a triangular cyclic
learning rate 0 → 0.2 → 0 over all iterations (peak at half), no early stopping.

Not reproduced: mixed precision (apex O2), and a quirk of the official start, which draws
channel c from U(−ε/σ_c, ε/σ_0) (the upper bound uses channel 0's std); here every channel
is U(−ε, ε) in pixel space. The official `--early-stop` (PGD-5 on the first training batch
each epoch) is not part of the method.

Known limits (official issues): α = 1.25ε overfits catastrophically at larger ε (at 12/255
α = 13/255 was suggested instead); on CIFAR-100 α must be reduced until training is stable.
With `attack.init='zero'` this is plain FGSM training (α = ε is then the usual choice).

Published (fast_adversarial README, CIFAR-10, ε = 8/255, PreAct ResNet-18): 86.06% clean,
46.06% robust (PGD-50 with 10 restarts), 12 minutes of training. UIAT's Table 5 lists
RS-FGSM at 84.07% clean / 46.15% AutoAttack (CIFAR-10, ε = 8/255).

  python -m jaxat.main --config=configs/fgsm_rs.py:cifar10 --workdir=runs/fgsm_rs_c10 \
      --config.dataset.data_dir=/path/to/cifar
  python -m jaxat.evaluate --workdir=runs/fgsm_rs_c10 --attacks=clean,pgd50-10,aa
"""

from __future__ import annotations

import ml_collections

from jaxat.methods import maximizer
from jaxat.methods.single_step import SingleStepAT

EPS = 8 / 255
STEP_FACTOR = 1.25   # α / ε of the official code (10/255 at 8/255)


class FGSMRS(SingleStepAT):
  name = "fgsm_rs"

  @classmethod
  def default_config(cls):
    return ml_collections.ConfigDict(dict(
        name=cls.name,
        attack=maximizer.attack_config(eps=EPS, step_size=STEP_FACTOR * EPS, num_steps=1,
                                       init="uniform", bn_mode="train", init_eps=0.0,
                                       project=True),
    ))
