"""``afsl-bench prepare``: raw deepfake videos -> a prepared store of face crops the data sets read.

Layout readers (one per raw data set: ff++, faceshifter, deeperforensics, celeb-df, dfdc) list the videos
with label, method, split and id; ``prepare`` decodes, finds faces, crops and writes the store
(``afsl_bench.prepare.store``). Importing this package registers the readers and the face detectors.
"""

from afsl_bench.prepare import celebdf, dfdc, ffpp  # noqa: F401  (registration)
from afsl_bench.prepare.faces import FACE_DETECTORS
from afsl_bench.prepare.layout import LAYOUTS
from afsl_bench.prepare.pipeline import PrepareOptions, VideoResult, prepare

__all__ = ["FACE_DETECTORS", "LAYOUTS", "PrepareOptions", "VideoResult", "prepare"]
