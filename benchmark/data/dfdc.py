"""``dfdc``: a prepared store of the DeepFake Detection Challenge training parts (Dolhansky et al. 2020,
https://arxiv.org/abs/2006.07397).

Labels from each part's metadata.json; splits 80 / 10 / 10 by a stable hash of the source video, so a fake
and its original are never in two splits. Prepare the raw videos first: ``afsl-bench prepare dfdc --root``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from afsl_bench.data.base import DATASETS
from afsl_bench.data.prepared import PreparedSet
from afsl_bench.prepare.dfdc import LAYOUT


@DATASETS.register("dfdc")
@dataclass(frozen=True)
class DFDC(PreparedSet):
    """DFDC (Dolhansky et al. 2020, https://arxiv.org/abs/2006.07397), training parts split by source video.

    prepared: the store (default $AFSL_DATA/dfdc, else data/prepared/dfdc); no_face: drop or keep frames
    without a detected face; clip_frames: 0 for frames, T >= 2 for clips.
    """

    layout: ClassVar[str] = LAYOUT
