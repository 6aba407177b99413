r"""One-off UIAT (Dong et al., CVPR 2023, Eq. 9-10, Appendix B.2), and UIAT as a plug-in for
single-step adversarial training (Eq. 11-13, Appendix B.3, Table 5).

Loss CE(f(x̂), y) + λ·KL(p_OO ‖ p(x̂)) with p_OO = p(x) before T' (80% of training),
p(x̃) of the class-wise universal inverse adversaries during epoch T' (stored per example),
and that stored value afterwards (no inverse adversary is computed outside epoch T').

Presets (`--config=configs/uiat_oneoff.py:<args>`): digits (default), synthetic, cifar10,
cifar10_subset, cifar100, svhn; `smoke` shrinks everything to seconds; and one of the
single-step tokens of Appendix B.3:
  fgsm_rs  one FGSM step of 1.25·eps from a uniform start (Wong et al.), train-mode BN;
  n_fgsm   one step of eps from U(−2·eps, 2·eps), no projection (de Jorge et al.);
both with the CE-only inverse step (β = 0) and, on real data, the fast-AT recipe
(PreAct ResNet-18, cyclic lr 0 → 0.2 → 0, 15 / 30 epochs; SVHN: the base methods' own
SVHN recipe, jaxat/config/fast_recipe.py); and the tokens of the single-step methods
with their own loss or state, into which UIAT is plugged (`method.base_method`, the
base's own loss plus λ·KL, the base's own recipe; ε' = ε/2, β = 0):
  grad_align, fgsm_bp, fgsm_ep, fgsm_mep, fgsm_sdi.
See jaxat/config/inverse_recipe.py. The matching base method (same recipe, no UIAT term)
is the same command with `--config.method.kl_weight=0` (the loss is then exactly the
base's: CE(f(x̂), y) for fgsm_rs / n_fgsm).

Published: Table 1 (ResNet-18, eps 8/255) CIFAR-10 84.98 clean / 54.79 PGD-20 / 51.29 CW /
49.05 AA; CIFAR-100 60.01 / 30.49 / 27.56 / 25.45; SVHN 93.14 / 58.30 / 55.45 / 52.49.
Table 5 (CIFAR-10, eps 8/255, clean / AA): N-FGSM + UIAT 81.85 / 49.84 (N-FGSM 80.29 /
48.24); RS-FGSM + UIAT 85.18 / 46.31 (RS-FGSM 84.07 / 46.15).

Measured on digits (30 epochs, eps 32/255, one seed): 98.6% clean / 76.9% PGD-20
(pgd_at on the same preset: 98.3 / 75.6).

  python -m jaxat.main --config=configs/uiat_oneoff.py:cifar10 --workdir=runs/uiat_oneoff_c10 \
      --config.dataset.data_dir=/path/to/cifar
  python -m jaxat.main --config=configs/uiat_oneoff.py:cifar10,n_fgsm --workdir=runs/nfgsm_uiat_c10 \
      --config.dataset.data_dir=/path/to/cifar
  python -m jaxat.main --config=configs/uiat_oneoff.py:cifar10,fgsm_mep --workdir=runs/mep_uiat_c10 \
      --config.dataset.data_dir=/path/to/cifar
"""

from jaxat.config import inverse_recipe


def get_config(arg=None):
  return inverse_recipe.inverse_config("uiat_oneoff", arg)
