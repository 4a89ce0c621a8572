"""FaceForensics++'s released Xception (Roessler et al., "FaceForensics++: Learning to Detect Manipulated
Facial Images", ICCV 2019, https://github.com/ondyari/FaceForensics, ``classification/``).

The authors ship each model (``full_c23.p`` and the like) as a pickled whole ``TransferModel``
(``classification/network/models.py``): ``model`` is their Xception (``network/xception.py``, the layer names
of timm's ``legacy_xception``) whose ``last_linear`` is a two-class ``nn.Linear`` (or ``Dropout`` +
``Linear`` when trained with dropout; 0 = real, 1 = fake). They test at 299 x 299 with mean = std = 0.5.
``afsl-bench convert-weights faceforensics full_c23.p full_c23.pt --allow-pickle`` writes the weights-only
state dict (detectors/sources/pickled.py: no code of the file runs); then
``--set detector.weights=faceforensics:full_c23.pt`` loads it into ``xception``.
"""

from __future__ import annotations

from afsl_bench.detectors.base import Head
from afsl_bench.detectors.sources.base import Layout, Source, register_source, rename

XCEPTION = Layout(
    detector="xception",
    network="TransferModel(xception)",
    renames=(
        rename(r"model\.last_linear\.(?:1\.)?(weight|bias)", r"head.\1"),
        rename(r"model\.(.+)", r"backbone.\1"),
    ),
    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), input_size=299,
    requires={"head": (Head.LINEAR, "it carries a linear two-logit classifier")},
)  # fmt: skip

FACEFORENSICS = register_source(
    Source(
        name="faceforensics",
        citation="FaceForensics++ (Roessler et al., ICCV 2019), https://github.com/ondyari/FaceForensics",
        layouts=(XCEPTION,),
        pickled_namespaces=("network.",),
    )
)
