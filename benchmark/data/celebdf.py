"""``celeb-df``: a prepared store of Celeb-DF (v2) (Li et al., CVPR 2020, https://arxiv.org/abs/1909.12962).

Test: the official List_of_testing_videos.txt (its inverted 1 = real labels are mapped to 1 = fake when the
store is prepared); train / val: the other videos, 90 / 10 by a stable hash of the video id. Prepare the
raw videos first: ``afsl-bench prepare celeb-df --root <Celeb-DF-v2>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from afsl_bench.data.base import DATASETS
from afsl_bench.data.prepared import PreparedSet
from afsl_bench.prepare.celebdf import LAYOUT


@DATASETS.register("celeb-df")
@dataclass(frozen=True)
class CelebDF(PreparedSet):
    """Celeb-DF v2 (Li et al., CVPR 2020, https://arxiv.org/abs/1909.12962), official test list.

    prepared: the store (default $AFSL_DATA/celeb-df, else data/prepared/celeb-df); no_face: drop or keep
    frames without a detected face; clip_frames: 0 for frames, T >= 2 for clips.
    """

    layout: ClassVar[str] = LAYOUT
