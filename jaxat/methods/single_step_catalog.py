"""The single-step (fast) adversarial-training methods: one signed-gradient step per batch.

They are stand-alone methods of the catalogue (jaxat/methods/catalog.py) and the bases
UIAT can be plugged into (Eq. 13 of Dong et al., jaxat/methods/uiat.py): each trains on
`prepared['x_adv']` and exposes the logits of that forward (`loss_and_logits`,
docs/architecture.md#plug-ins). A new single-step method is added here.
"""

from __future__ import annotations

from jaxat.methods.base import Method
from jaxat.methods.fgsm_pgi import FGSMBP, FGSMEP, FGSMMEP
from jaxat.methods.fgsm_rs import FGSMRS
from jaxat.methods.fgsm_sdi import FGSMSDI
from jaxat.methods.grad_align import GradAlign
from jaxat.methods.n_fgsm import NFGSM

SINGLE_STEP_METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (FGSMRS, NFGSM, GradAlign, FGSMBP, FGSMEP, FGSMMEP, FGSMSDI)}
