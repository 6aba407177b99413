"""Pictures of the class-wise universal inverse perturbations z (UIAT paper, Figure 6).

For each class c: a test image x of that class, its universal inverse adversary
x̃ = clip(x + z_c, 0, 1), and z_c itself scaled to the visible range by
0.5 + z_c / (2ε') (mid-grey = 0; black/white = −ε'/+ε'). Classes are laid out ten per row
block. Per-class statistics go to JSON.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def universal_perturbations(method_state: Any, method_name: str = "") -> np.ndarray:
  """z (K,H,W,C) float32 from a run's `method_state`; ValueError when the run has none."""
  if not isinstance(method_state, dict) or "universal" not in method_state:
    raise ValueError(f"the run (method {method_name!r}) has no class-wise universal perturbations "
                     "in its state; they exist for methods with generation='universal' (uiat, "
                     "uiat_oneoff), not for instance-wise or other methods")
  return np.asarray(method_state["universal"], np.float32)


def perturbation_stats(universal: np.ndarray, eps: float,
                       class_names: Sequence[str]) -> list[dict[str, Any]]:
  """Per class: L-inf norm, mean |z|, and the fraction of entries at the ε' bound."""
  stats = []
  for c, z in enumerate(universal):
    magnitude = np.abs(z)
    stats.append({"class": int(c), "name": str(class_names[c]) if c < len(class_names) else str(c),
                  "linf": float(magnitude.max()), "mean_abs": float(magnitude.mean()),
                  "fraction_at_bound": float(np.mean(magnitude >= eps * (1 - 1e-6)))})
  return stats


def example_per_class(images: np.ndarray, labels: np.ndarray, num_classes: int) -> list:
  """The first image (H,W,C uint8) of each class in a split, or None for absent classes."""
  out = []
  for c in range(num_classes):
    where = np.flatnonzero(labels == c)
    out.append(images[where[0]] if len(where) else None)
  return out


def _show(ax, image: np.ndarray) -> None:
  image = np.clip(image, 0.0, 1.0)
  if image.shape[-1] == 1:
    ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
  else:
    ax.imshow(image, interpolation="nearest")
  ax.set_xticks([])
  ax.set_yticks([])


def plot_universal(universal: np.ndarray, eps: float, examples: Sequence, class_names: Sequence[str],
                   path: str, title: str = "") -> None:
  """Writes the Figure-6 style grid (x, x̃, scaled z per class) as a PNG."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  num_classes = universal.shape[0]
  columns = min(num_classes, 10)
  blocks = math.ceil(num_classes / columns)
  fig, axes = plt.subplots(3 * blocks, columns, figsize=(1.2 * columns + 0.8, 3.6 * blocks + 0.4),
                           dpi=120, squeeze=False)
  row_names = ("x", "x + z_c", "z_c (scaled)")
  for ax in axes.flat:
    ax.axis("off")
  for c in range(num_classes):
    block, column = divmod(c, columns)
    z = universal[c]
    panels = [None, None, 0.5 + z / (2.0 * eps) if eps > 0 else 0.5 + z]
    if examples[c] is not None:
      x = examples[c].astype(np.float32) / 255.0
      panels[0], panels[1] = x, np.clip(x + z, 0.0, 1.0)
    for offset, panel in enumerate(panels):
      ax = axes[3 * block + offset, column]
      if panel is None:
        continue
      ax.axis("on")
      _show(ax, panel)
      if offset == 0 or examples[c] is None and offset == 2:
        name = class_names[c] if c < len(class_names) else str(c)
        ax.set_title(str(name)[:12], fontsize=7)
      if column == 0:
        ax.set_ylabel(row_names[offset], fontsize=7)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
