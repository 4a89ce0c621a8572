"""``ff++``, ``faceshifter`` and ``deeperforensics``: prepared stores of FaceForensics++ and of the fakes
made on its real videos, in the official FF++ 720 / 140 / 140 splits.

FaceForensics++: Rossler et al., ICCV 2019, https://arxiv.org/abs/1901.08971. FaceShifter: Li et al.,
CVPR 2020, https://arxiv.org/abs/1912.13457. DeeperForensics-1.0: Jiang et al., CVPR 2020,
https://arxiv.org/abs/2001.03024. Prepare the raw videos first (``afsl-bench prepare ff++ --root ...``);
the raw layouts are in ``afsl_bench.prepare.ffpp``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from afsl_bench.core.types import DataBundle
from afsl_bench.data.base import DATASETS
from afsl_bench.data.prepared import PreparedSet
from afsl_bench.prepare.ffpp import DFO_LAYOUT, FFPP_LAYOUT, FFPP_METHODS, Compression


@DATASETS.register("ff++")
@dataclass(frozen=True)
class FFPP(PreparedSet):
    """FaceForensics++ (Rossler et al., ICCV 2019, https://arxiv.org/abs/1901.08971), official splits.

    prepared: the store (default $AFSL_DATA/ff++, else data/prepared/ff++); methods: the fakes to use, from
    those prepared (Deepfakes, Face2Face, FaceSwap, NeuralTextures); compression: the one prepared (checked);
    no_face: drop or keep frames without a detected face; clip_frames: 0 for frames, T >= 2 for clips.
    """

    methods: tuple[str, ...] = FFPP_METHODS
    compression: Compression = Compression.C23
    layout: ClassVar[str] = FFPP_LAYOUT

    def build(self) -> DataBundle:
        return self.load(methods=self.methods, expect={"compression": self.compression})


@DATASETS.register("faceshifter")
@dataclass(frozen=True)
class FaceShifter(PreparedSet):
    """FaceShifter fakes on FF++'s real videos (Li et al., CVPR 2020, https://arxiv.org/abs/1912.13457).

    Parameters as for ``ff++``; the store defaults to $AFSL_DATA/faceshifter, else data/prepared/faceshifter.
    """

    compression: Compression = Compression.C23
    layout: ClassVar[str] = FFPP_LAYOUT

    def build(self) -> DataBundle:
        return self.load(expect={"compression": self.compression})


@DATASETS.register("deeperforensics")
@dataclass(frozen=True)
class DeeperForensics(PreparedSet):
    """DeeperForensics-1.0 (Jiang et al., CVPR 2020, https://arxiv.org/abs/2001.03024) on FF++'s reals.

    variant: the manipulated_videos/<variant> prepared (checked); other parameters as for ``ff++``.
    """

    variant: str = "end_to_end"
    layout: ClassVar[str] = DFO_LAYOUT

    def build(self) -> DataBundle:
        return self.load(expect={"variant": self.variant})
