"""Pictures unlike any trained picture: a cheap check of the network input, and the network's
own evidence, so that such a picture goes to bin 1 with a reason of its own.

:func:`picture_doubt` looks at the preprocessed input (the 96 px picture the network sees):

* ``black frame``: the brightest pixels are dark (light off, lens covered);
* ``washed-out frame``: most pixels are clipped white, or the frame is bright with no
  contrast (over-exposure, glare), or even its darkest pixels are bright (a veil of glare:
  a lit fruit always casts a shadow; on 12,600 fruit pictures of every render domain the
  1st percentile of luma reached 110 only in the ``robust`` training domain's most
  over-exposed frames).

A model may also have a reject class (``none``: empty belts, several fruits, clutter, glare),
whose answer is the doubt ``not one fruit`` (:mod:`bt_sorter.vision.torch_backend`).

:func:`logit_doubt` is the network's side: a largest logit below the model's floor
(``meta.min_logit``, fitted by ``calibrate --floor-share``) means no class explains the
picture (an empty belt, another object). Both are measured by ``bench/vision_odd.py``.
A blob count on the difference from the belt (for empty belts and two fruits) was tried and
dropped: it doubted up to 11 % of one-fruit pictures of raw fruit (a dark side splits them).
"""

from __future__ import annotations

import numpy as np

from bt_sorter.vision.preprocess import IMAGENET_MEAN, IMAGENET_STD

BLACK_LEVEL = 25.0  # 99th percentile of luma (0..255) below this: a black frame
CLIPPED_SHARE = 0.7  # share of pixels at >= 250 luma above this: washed out
GLARE_CONTRAST = 14.0  # luma standard deviation below this, with a bright mean: glare
GLARE_MEAN = 170.0
VEIL_LEVEL = 110.0  # 1st percentile of luma at or above this: a veil of glare, no shadow left

# Every doubt a classifier may give (Prediction.doubt), here and nowhere else:
BLACK = "black frame"  # picture_doubt: the light is off, the lens covered
WASHED_OUT = "washed-out frame"  # picture_doubt: over-exposure, glare
UNLIKE = "unlike any trained picture"  # logit_doubt: no class explains the picture
NOT_ONE_FRUIT = "not one fruit"  # a model's own "reject" class (an empty belt, two fruits)
DOUBTS = (BLACK, WASHED_OUT, UNLIKE, NOT_ONE_FRUIT)

_MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)[:, None, None] * 255.0
_STD = np.array(IMAGENET_STD, dtype=np.float32)[:, None, None] * 255.0


def input_to_rgb(chw: np.ndarray) -> np.ndarray:
    """A preprocessed (3, S, S) network input back to RGB (S, S, 3) float32 in 0..255."""
    return np.ascontiguousarray((chw * _STD + _MEAN).transpose(1, 2, 0))


def picture_doubt(chw: np.ndarray) -> str:
    """Why the preprocessed picture ``chw`` is no usable camera frame, or ``""``."""
    rgb = np.clip(input_to_rgb(chw), 0.0, 255.0)
    luma = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if float(np.percentile(luma, 99)) < BLACK_LEVEL:
        return BLACK
    if float((luma >= 250.0).mean()) > CLIPPED_SHARE:
        return WASHED_OUT
    if float(luma.std()) < GLARE_CONTRAST and float(luma.mean()) > GLARE_MEAN:
        return WASHED_OUT
    if float(np.percentile(luma, 1)) >= VEIL_LEVEL:  # every lit fruit casts a shadow
        return WASHED_OUT
    return ""


def logit_doubt(max_logit: float, floor: float | None) -> str:
    """``unlike any trained picture`` when the largest logit is under ``floor`` (if any)."""
    if floor is not None and max_logit < floor:
        return UNLIKE
    return ""
