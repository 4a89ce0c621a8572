"""``celeb-df``: a prepared store of Celeb-DF (v2) (Li et al., CVPR 2020, https://arxiv.org/abs/1909.12962).

Test: the official List_of_testing_videos.txt (its inverted 1 = real labels are mapped to 1 = fake when the
store is prepared); train / val: the other videos, 90 / 10 by a stable hash of the video id. Prepare the
raw videos first: ``afsl-bench prepare celeb-df --root <Celeb-DF-v2>``.
"""

from __future__ import annotations

from afsl_bench.core.types import DataBundle
from afsl_bench.data.base import DATASETS
from afsl_bench.data.prepared import NoFace, load_prepared, store_content_id
from afsl_bench.prepare.celebdf import LAYOUT


@DATASETS.register("celeb-df")
def celeb_df(prepared: str = "", no_face: NoFace = NoFace.DROP, clip_frames: int = 0) -> DataBundle:
    """Celeb-DF v2 (Li et al., CVPR 2020, https://arxiv.org/abs/1909.12962), official test list.

    prepared: the store (default $AFSL_DATA/celeb-df, else data/prepared/celeb-df); no_face: drop or keep
    frames without a detected face; clip_frames: 0 for frames, T >= 2 for clips.
    """
    return load_prepared("celeb-df", prepared, LAYOUT, no_face=no_face, clip_frames=clip_frames)


celeb_df.content_id = store_content_id("celeb-df")  # the store's contents enter every cell id that reads it
