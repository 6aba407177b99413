"""The UIAT paper's published numbers (Dong et al., CVPR 2023, "Enhancing Adversarial
Robustness via Inverse Adversarial Training"), kept as data so that paper_table.py can
print every rerun beside them and tests can check the columns.

Accuracies in %, ε = 8/255 (L∞), ResNet-18, the final model. Keys are jaxat's evaluation
items: clean (the paper's "natural"), pgd20, cw20 (the paper's "CW", CW loss under
PGD-20) and aa (AutoAttack standard). An item the paper does not report for a dataset is
absent, never zero.
"""

from __future__ import annotations

# Table 1: every row trained on UIAT's recipe (jaxat's `table1` token). The paper reports
# CIFAR-100 and SVHN with natural and AA accuracy only in the columns kept here.
TABLE1 = {
    "cifar10": {
        "pgd_at": {"clean": 83.80, "pgd20": 51.40, "cw20": 50.17, "aa": 47.68},
        "trades": {"clean": 82.45, "pgd20": 52.21, "cw20": 50.29, "aa": 48.88},
        "mart": {"clean": 82.20, "pgd20": 53.94, "cw20": 50.43, "aa": 48.04},
        "uiat": {"clean": 85.01, "pgd20": 54.63, "cw20": 51.10, "aa": 49.11},
        "uiat_oneoff": {"clean": 84.98, "pgd20": 54.79, "cw20": 51.29, "aa": 49.05},
    },
    "cifar100": {
        "pgd_at": {"clean": 57.39, "aa": 23.18},
        "trades": {"clean": 54.36, "aa": 23.14},
        "mart": {"clean": 54.78, "aa": 24.58},
        "uiat": {"clean": 59.55, "aa": 25.73},
        "uiat_oneoff": {"clean": 60.01, "aa": 25.45},
    },
    "svhn": {
        "pgd_at": {"clean": 92.46, "aa": 46.07},
        "trades": {"clean": 90.63, "aa": 52.62},
        "mart": {"clean": 89.88, "aa": 48.44},
        "uiat": {"clean": 93.28, "aa": 52.45},
        "uiat_oneoff": {"clean": 93.14, "aa": 52.49},
    },
}

# Table 6: the ablation on CIFAR-10 (natural / PGD-20 / AA); keys are paper_table.py's
# Table 6 row keys.
TABLE6 = {
    "cifar10": {
        "iat": {"clean": 83.97, "pgd20": 53.98, "aa": 48.33},
        "uag": {"clean": 85.19, "pgd20": 53.56, "aa": 47.63},
        "uag_fr": {"clean": 85.11, "pgd20": 54.13, "aa": 48.47},
        "uag_iam": {"clean": 84.85, "pgd20": 54.29, "aa": 48.83},
        "uiat": {"clean": 85.01, "pgd20": 54.63, "aa": 49.11},
    },
}

PUBLISHED = {"1": TABLE1, "6": TABLE6}
