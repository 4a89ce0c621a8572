"""``ff++``, ``faceshifter`` and ``deeperforensics``: prepared stores of FaceForensics++ and of the fakes
made on its real videos, in the official FF++ 720 / 140 / 140 splits.

FaceForensics++: Rossler et al., ICCV 2019, https://arxiv.org/abs/1901.08971. FaceShifter: Li et al.,
CVPR 2020, https://arxiv.org/abs/1912.13457. DeeperForensics-1.0: Jiang et al., CVPR 2020,
https://arxiv.org/abs/2001.03024. Prepare the raw videos first (``afsl-bench prepare ff++ --root ...``);
the raw layouts are in ``afsl_bench.prepare.ffpp``.
"""

from __future__ import annotations

from afsl_bench.core.types import DataBundle
from afsl_bench.data.base import DATASETS
from afsl_bench.data.prepared import NoFace, load_prepared, store_content_id
from afsl_bench.prepare.ffpp import DFO_LAYOUT, FFPP_LAYOUT, FFPP_METHODS, Compression


@DATASETS.register("ff++")
def ffpp(
    prepared: str = "",
    methods: tuple[str, ...] = FFPP_METHODS,
    compression: Compression = Compression.C23,
    no_face: NoFace = NoFace.DROP,
    clip_frames: int = 0,
) -> DataBundle:
    """FaceForensics++ (Rossler et al., ICCV 2019, https://arxiv.org/abs/1901.08971), official splits.

    prepared: the store (default $AFSL_DATA/ff++, else data/prepared/ff++); methods: the fakes to use, from
    those prepared (Deepfakes, Face2Face, FaceSwap, NeuralTextures); compression: the one prepared (checked);
    no_face: drop or keep frames without a detected face; clip_frames: 0 for frames, T >= 2 for clips.
    """
    expect = {"compression": compression}
    return load_prepared(
        "ff++",
        prepared,
        FFPP_LAYOUT,
        methods=methods,
        expect=expect,
        no_face=no_face,
        clip_frames=clip_frames,
    )


@DATASETS.register("faceshifter")
def faceshifter(
    prepared: str = "",
    compression: Compression = Compression.C23,
    no_face: NoFace = NoFace.DROP,
    clip_frames: int = 0,
) -> DataBundle:
    """FaceShifter fakes on FF++'s real videos (Li et al., CVPR 2020, https://arxiv.org/abs/1912.13457).

    Parameters as for ``ff++``; the store defaults to $AFSL_DATA/faceshifter, else data/prepared/faceshifter.
    """
    expect = {"compression": compression}
    return load_prepared(
        "faceshifter", prepared, FFPP_LAYOUT, expect=expect, no_face=no_face, clip_frames=clip_frames
    )


@DATASETS.register("deeperforensics")
def deeperforensics(
    prepared: str = "",
    variant: str = "end_to_end",
    no_face: NoFace = NoFace.DROP,
    clip_frames: int = 0,
) -> DataBundle:
    """DeeperForensics-1.0 (Jiang et al., CVPR 2020, https://arxiv.org/abs/2001.03024) on FF++'s reals.

    variant: the manipulated_videos/<variant> prepared (checked); other parameters as for ``ff++``.
    """
    expect = {"variant": variant}
    return load_prepared(
        "deeperforensics", prepared, DFO_LAYOUT, expect=expect, no_face=no_face, clip_frames=clip_frames
    )


# each store's contents enter the cell ids of the cells that read it
ffpp.content_id = store_content_id("ff++")
faceshifter.content_id = store_content_id("faceshifter")
deeperforensics.content_id = store_content_id("deeperforensics")
