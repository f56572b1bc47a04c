"""JPEG compressibility and incompressibility of generated digits, as DDPO defines them.

Black, Janner, Du, Kostrikov and Levine, ICLR 2024, "Training Diffusion Models
with Reinforcement Learning" (DDPO): the reward is the size of the image
saved as JPEG at quality 95, in kB; compressibility is its negative,
incompressibility the size itself. Implemented as in ddpo-pytorch
(kvablack/ddpo-pytorch, ddpo_pytorch/rewards.py at 1958463f): PIL
`Image.save(buffer, format="JPEG", quality=95)`, size = bytes / 1000. Written
anew, not copied; what changed: images here are greyscale 16x16 uint8 (PIL
mode "L", one JPEG component), and a design is only scored when it is a
recognisable digit of the label it was generated for.

Feasibility: the digit classifier (domains/images/classifier.py) gives the
design's condition probability >= `threshold`. The default 0.5 is the least
probability at which the label is certain to be the classifier's top choice
and outweighs all nine other digits together: lower, and an image the
classifier finds ambiguous between two digits would pass; higher, and more
real but sloppy digits would fail (98.5% of the held-out digits pass at 0.5,
94.9% at 0.9).

Floors (what an infeasible design counts as in the final-value metric): the
worst reward any 16x16 greyscale image can get, so that an infeasible design
never counts as better than a feasible one.
- incompressibility: the smallest JPEG, that of a constant image, computed
  below over all 256 constant images. It is the minimum over all images:
  with PIL's fixed standard Huffman tables (no `optimize`), mid-grey 128 codes
  every 8x8 block in the shortest possible way (DC difference 0, then at once
  end-of-block);
- compressibility: minus the largest JPEG known for a 16x16 greyscale image,
  `LARGEST_JPEG_KB`, found by the seeded hill climb `search_largest_jpeg` from
  salt-and-pepper noise (uniform noise gives about 0.60 kB). No exact maximum
  is known; tests rerun the search and check that no noise image exceeds it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import cache

import numpy as np
from PIL import Image

from domains.base import OracleOutput
from domains.images.classifier import DigitClassifier, load_classifier
from domains.images.design import ImageDesign
from domains.images.digits import IMAGE_SIZE, digit_labels, stack_pixels

JPEG_QUALITY = 95
"""DDPO's JPEG quality (ddpo_pytorch/rewards.py)."""
LARGEST_JPEG_KB = 0.667
"""The largest JPEG found for a 16x16 greyscale image: `search_largest_jpeg()` with its
defaults (test_jpeg reruns it)."""


def jpeg_size_kb(pixels: np.ndarray) -> float:
    """Size in kB (bytes / 1000) of one uint8 image saved as JPEG at quality 95 by PIL."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.tell() / 1000


def jpeg_sizes_kb(pixels: np.ndarray) -> np.ndarray:
    """(N,) float64 JPEG sizes in kB of (N, H, W) uint8 images."""
    return np.array([jpeg_size_kb(p) for p in pixels], dtype=np.float64)


@cache
def quantisation_table() -> np.ndarray:
    """(8, 8) the luminance quantisation steps PIL writes at quality 95, in natural (row) order."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    buffer.seek(0)
    with Image.open(buffer) as image:
        return np.asarray(image.quantization[0], dtype=np.float64).reshape(8, 8)


@cache
def smallest_jpeg_kb(size: int = IMAGE_SIZE) -> float:
    """The JPEG size of the most compressible (size, size) image: the least over the
    256 constant images (about 3 ms each)."""
    return min(jpeg_size_kb(np.full((size, size), level, dtype=np.uint8)) for level in range(256))


def search_largest_jpeg(steps: int = 5000, seed: int = 0, size: int = IMAGE_SIZE) -> tuple[np.ndarray, float]:
    """(pixels, kB) of a hill climb towards the largest JPEG: start from black-and-white
    salt-and-pepper noise (whose JPEGs are larger than uniform noise's) and, `steps` times,
    change one pixel (to a random level or to its opposite), keeping the change unless
    the file shrinks. Seeded: the same arguments give the same answer."""
    rng = np.random.default_rng(seed)
    best = (rng.integers(0, 2, (size, size)) * 255).astype(np.uint8)
    best_kb = jpeg_size_kb(best)
    for _ in range(steps):
        candidate = best.copy()
        i, j = rng.integers(0, size, 2)
        candidate[i, j] = rng.integers(0, 256) if rng.random() < 0.5 else 255 - candidate[i, j]
        kb = jpeg_size_kb(candidate)
        if kb >= best_kb:
            best, best_kb = candidate, kb
    return best, best_kb


class DigitJpegOracle:
    """JPEG size of a generated digit times `sign`, NaN unless the classifier
    recognises the digit it was generated for. Subclasses fix the sign and floor."""

    task: str
    sign: float
    optimum = None  # no known maximum: the extreme JPEGs are noise or blank, never digits

    def __init__(self, classifier: DigitClassifier | None = None, threshold: float = 0.5):
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold={threshold} must lie in (0, 1]: it is a probability")
        self.classifier = classifier if classifier is not None else load_classifier()
        self.threshold = threshold
        self.name = f"digits-{self.task}-p{threshold:g}"

    def label_probability(self, designs: Sequence[ImageDesign]) -> np.ndarray:
        """(N,) float64 probability the classifier gives each design's condition."""
        return self._label_probability(stack_pixels(designs), digit_labels(designs))

    def _label_probability(self, pixels: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return self.classifier.probabilities(pixels)[np.arange(len(labels)), labels]

    def reasons(self, designs: Sequence[ImageDesign]) -> list[str | None]:
        """Why a design is infeasible: the digit the classifier sees instead, and its probability of the condition."""
        labels = digit_labels(designs)
        probs = self.classifier.probabilities(stack_pixels(designs))
        return [None if p[label] >= self.threshold else
                f"classifier sees {int(p.argmax())} (p={p.max():.2f}), not {label} (p={p[label]:.2f})"
                for p, label in zip(probs, labels)]

    def __call__(self, designs: Sequence[ImageDesign]) -> OracleOutput:
        pixels, labels = stack_pixels(designs), digit_labels(designs)
        feasible = self._label_probability(pixels, labels) >= self.threshold
        reward = np.full(len(pixels), np.nan, dtype=np.float64)
        reward[feasible] = self.sign * jpeg_sizes_kb(pixels[feasible])
        return OracleOutput(reward=reward, feasible=feasible)

    def key(self, design: ImageDesign) -> str:
        """`ImageDesign.key`: pixels and label, so the same image for another digit is
        another measurement (its feasibility differs)."""
        stack_pixels([design])  # the same one-line errors as a query
        digit_labels([design])
        return design.key()


class JpegCompressibility(DigitJpegOracle):
    """DDPO's JPEG compressibility: minus the JPEG size in kB (larger is smaller files)."""

    task = "jpeg-compressibility"
    sign = -1.0
    floor = -LARGEST_JPEG_KB


class JpegIncompressibility(DigitJpegOracle):
    """DDPO's JPEG incompressibility: the JPEG size in kB (larger is larger files)."""

    task = "jpeg-incompressibility"
    sign = 1.0

    def __init__(self, classifier: DigitClassifier | None = None, threshold: float = 0.5):
        super().__init__(classifier, threshold)
        self.floor = smallest_jpeg_kb()
