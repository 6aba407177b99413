r"""N-FGSM: noise-augmented single-step adversarial training (de Jorge et al., NeurIPS 2022,
"Make Some Noise: Reliable and Efficient Single-Step Adversarial Training").
Docs: docs/fast_adversarial_training.md#n-fgsm.

Per batch (L∞, pixel units in [0,1]):

  η     ~ U(−k·ε, k·ε) per element,  x_0 = Π_img(x + η)     k = 2
  g     = ∇_x CE(f(x_0), y)                                  train-mode BatchNorm
  x_adv = Π_img(x_0 + α·sign(g)),  α = ε                     NO projection to the ε-ball
  loss  = CE(f(x_adv), y)                                    batch mean, train mode

so ‖x_adv − x‖∞ ≤ (k+1)·ε: the training perturbation deliberately leaves the threat model
(the test ε stays ε). Config: attack.init_eps = k·ε (absolute, pixel units), attack.step_size
= α, attack.project = False; changing attack.eps does not move them.

Official behaviour (pdejorge/N-FGSM, train.py and experiments.sh), the default here: model
in train mode throughout (the attack pass updates the BatchNorm running statistics); the
noise is clipped to the image before the gradient; PreAct ResNet-18 with the final BN+ReLU,
inputs normalised with the dataset mean/std (inside the model; the attack works in pixel
space, which is the official ε/std per channel), 30 epochs, batch 128, SGD momentum 0.9,
weight decay 5e-4, triangular cyclic learning rate 0 → 0.2 → 0 (peak at half). SVHN: the
code sets lr_max 0.05, the cyclic lr goes up over 2/5 of the iterations and down over 3/5,
and ε and α (hence the noise k·ε) ramp linearly from 0 over the first 5 epochs
(`attack.ramp_epochs=5`, the budget role of jaxat/methods/budgets.py; the official ramp
is iteration/(5·iterations per epoch), zero at the very first step, the budget role's is
(step+1)/(5·steps per epoch)); at SVHN ε = 12/255 the code uses k = 3.

Not reproduced: the SVHN normalisation statistics of the official code ((0.4380, 0.4440,
0.4730) / (0.1751, 0.1771, 0.1744)); jaxat's SVHN loader supplies its own mean/std. The
optional validation early stopping is not part of the method.

Published: UIAT's Table 5 lists N-FGSM at 80.29% clean / 48.24% AutoAttack (CIFAR-10,
ε = 8/255); the N-FGSM paper's own tables are not given here.

  python -m jaxat.main --config=configs/n_fgsm.py:cifar10 --workdir=runs/n_fgsm_c10 \
      --config.dataset.data_dir=/path/to/cifar
  python -m jaxat.evaluate --workdir=runs/n_fgsm_c10 --attacks=clean,pgd50-10,aa
"""

from __future__ import annotations

import ml_collections

from jaxat.methods import maximizer
from jaxat.methods.single_step import SingleStepAT

EPS = 8 / 255
NOISE_FACTOR = 2.0   # k of U(−kε, kε)


class NFGSM(SingleStepAT):
  name = "n_fgsm"

  @classmethod
  def default_config(cls):
    return ml_collections.ConfigDict(dict(
        name=cls.name,
        attack=maximizer.attack_config(eps=EPS, step_size=EPS, num_steps=1, init="uniform",
                                       bn_mode="train", init_eps=NOISE_FACTOR * EPS,
                                       project=False),
    ))
