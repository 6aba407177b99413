"""Fixed facts about the public image datasets: class names and channel statistics.

The statistics are the constants used throughout the adversarial-training literature
(computed on each training set, inputs scaled to [0, 1]); using them rather than
recomputing keeps normalisation identical whichever source (TFDS or original files)
the pixels came from.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class PublicDatasetFacts:
  """What is known about a public dataset without reading it.

  Attributes:
    class_names: one name per class, indexed by label; empty when the names are the
      data's own (Tiny-ImageNet: the wnids its files list).
    mean: per-channel mean of the training images scaled to [0, 1].
    std: per-channel standard deviation of the training images scaled to [0, 1].
    image_shape: (H, W, C) of every image.
  """

  class_names: tuple[str, ...]
  mean: tuple[float, ...]
  std: tuple[float, ...]
  image_shape: tuple[int, int, int]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


CIFAR10 = PublicDatasetFacts(
    class_names=(
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    ),
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2471, 0.2435, 0.2616),
    image_shape=(32, 32, 3),
)

# Fine labels, in the (alphabetical) order of `fine_label_names` in the archive's meta.
CIFAR100 = PublicDatasetFacts(
    class_names=(
        "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle",
        "bicycle", "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel",
        "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
        "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
        "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster",
        "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
        "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse",
        "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear",
        "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
        "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea",
        "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
        "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
        "telephone", "television", "tiger", "tractor", "train", "trout", "tulip",
        "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
    ),
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
    image_shape=(32, 32, 3),
)

# SVHN digits; the original files' label 10 stands for digit 0 and is mapped to 0.
SVHN = PublicDatasetFacts(
    class_names=tuple(str(digit) for digit in range(10)),
    mean=(0.4377, 0.4438, 0.4728),
    std=(0.1980, 0.2010, 0.1970),
    image_shape=(32, 32, 3),
)
