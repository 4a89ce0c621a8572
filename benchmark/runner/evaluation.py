"""Evaluate one trained detector under one attack on one split: a per-sample table.

Clean scores are computed under ``torch.inference_mode``; the attack gets input gradients only (the
attack base class freezes the parameters). The score of a sample is its logit margin z_fake - z_real on
the calibrated detector, so ``score > 0`` is the decision "fake". Per-sample columns an attack reports
(``AttackOutput.info``: queries spent, the ensemble member that broke a sample, scores after a codec round
trip) are appended to the table under their own names.

Clean scores depend on the trained model and the evaluation split only, not on the attack: a caller that
has them (the runner's cache, ``RecordStore.clean_scores``) passes them in as ``clean_scores`` and the clean
forward pass is skipped; ``clean_fingerprint`` names the weights and samples they are valid for.

Every forward pass goes through a ``FrozenModel`` (``afsl_bench.core.speed``: batch norm folded, channels-last,
compiled where it pays; ``compile``), which is told after each batch how long it took and how many remain.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from afsl_bench.attacks.base import Attack
from afsl_bench.attacks.ops import attacked_mask
from afsl_bench.attacks.vocabulary import Direction
from afsl_bench.core.errors import ConfigError
from afsl_bench.core.speed import Compile, FrozenModel
from afsl_bench.core.types import Batch, Split
from afsl_bench.detectors.base import Detector


def margin(logits: torch.Tensor) -> torch.Tensor:
    return logits[:, 1] - logits[:, 0]


def clean_fingerprint(model: torch.nn.Module, split: Split) -> str:
    """A digest of the model's weights and buffers (the calibrated threshold included) and the split's
    sample ids: cached clean scores are reused only for the same fingerprint (a retrained checkpoint with
    other weights gets new ones)."""
    digest = _state_digest(model)
    digest.update("\n".join(split.sample_ids).encode())
    return digest.hexdigest()[:16]


def weights_digest(model: torch.nn.Module) -> str:
    """A digest of the model's state_dict (names, dtypes, shapes and values): the identity of a model that
    was not trained by the suite (``afsl_bench.evaluate``)."""
    return _state_digest(model).hexdigest()[:16]


#: what a module's plain state may hold to be digested: JSON's values, nested
PLAIN = (str, int, float, bool, type(None))
#: attributes every nn.Module has that say nothing of what it computes
MODULE_INTERNALS = {"training"}


def model_digest(model: torch.nn.Module) -> tuple[str, list[str]]:
    """The identity of a model given to the API: a digest of every submodule's class, its plain (non-tensor)
    attributes and its weights and buffers. Returns it with the attributes that could not be digested
    (a function, an open file, an array: state that may change what the model computes but has no stable
    value); the API then asks for ``name=``."""
    digest, opaque = _state_digest(model), []
    for path, module in sorted(model.named_modules(), key=lambda item: item[0]):
        kind = type(module)
        digest.update(f"{path}:{kind.__module__}.{kind.__qualname__};".encode())
        for key, value in sorted(vars(module).items()):
            if key.startswith("_") or key in MODULE_INTERNALS:
                continue
            if _plain(value):
                digest.update(f"{path}.{key}={value!r};".encode())
            else:
                opaque.append(f"{path + '.' if path else ''}{key} ({type(value).__name__})")
    return digest.hexdigest()[:16], opaque


def _plain(value: object) -> bool:
    if isinstance(value, PLAIN):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _state_digest(model: torch.nn.Module) -> hashlib._Hash:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest


#: the side of SSIM's Gaussian window (Wang et al. 2004): images smaller than it have no SSIM (NaN)
SSIM_WINDOW = 11


@torch.no_grad()
def perceptual(x: torch.Tensor, x_adv: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample SSIM (Wang et al., "Image quality assessment: from error visibility to structural
    similarity", IEEE TIP 2004: an 11 x 11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03) and PSNR (dB)
    of each adversarial image against its clean image, pixel range [0, 1], from torchmetrics; a clip's
    values are the means over its frames. An unchanged image has SSIM 1 and PSNR inf."""
    # imported here: torchmetrics' image package takes seconds to import, and only attacked batches need it
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    frames = x.shape[1] if x.dim() == 5 else 1
    clean, adv = x.reshape(-1, *x.shape[-3:]).float(), x_adv.reshape(-1, *x.shape[-3:]).float()
    if min(clean.shape[-2:]) < SSIM_WINDOW:
        nan = torch.full((len(x),), float("nan"))
        return {"ssim": nan, "psnr": nan.clone()}
    ssim = structural_similarity_index_measure(adv, clean, data_range=1.0, reduction="none")
    psnr = peak_signal_noise_ratio(adv, clean, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return {"ssim": ssim.view(-1, frames).mean(1), "psnr": psnr.view(-1, frames).mean(1)}


def check_numbers(scores: torch.Tensor, which: str, batch: int) -> None:
    """A model that returns NaN (or inf) scores is refused at the first batch that shows it, saying how many:
    every metric of such a cell would be silently wrong."""
    bad = int((~torch.isfinite(scores)).sum())
    if bad:
        raise ConfigError(
            f"the model returned NaN or infinite scores for {bad} of {len(scores)} {which} samples of batch "
            f"{batch + 1}: check the model's output (a division by zero, an overflow in a reduced precision)"
        )


#: the most often progress inside a batch is reported (seconds)
WITHIN_BATCH_EVERY_S = 1.0


def real_scores(model: FrozenModel, split: Split, batch_size: int, device: torch.device) -> np.ndarray:
    """The clean margins of a split's reals (a deployer's threshold is set on them: ``core.operating``)."""
    reals = split.subset(torch.nonzero(split.labels == 0).squeeze(1))
    out = []
    with torch.inference_mode():
        for batch in reals.batches(batch_size):
            out.append(margin(model.exact(batch.to(device).x)).float().cpu())
    scores = torch.cat(out).numpy() if out else np.zeros(0)
    check_numbers(torch.from_numpy(scores), "clean validation", 0)
    return scores


@dataclass
class WithinBatch:
    """Progress inside a batch, for attacks that run long on one batch (``--set attack.steps=100000``): the
    model evaluations so far against the attack's budget (``Attack.forward_budget`` per attacked sample)
    move ``on_batch`` by a fraction of the batch, at most every ``every_s`` seconds and never to its end
    (early stops finish a batch sooner than its budget)."""

    on_batch: Callable[[float, int], None]
    total: int
    budget: int | None
    every_s: float = field(default_factory=lambda: WITHIN_BATCH_EVERY_S)
    start: int = 0
    size: int = 0
    expected: float = 0.0
    seen: int = 0
    said_at: float = field(default_factory=time.monotonic)

    def begin(self, start: int, batch: Batch, direction: Direction) -> Callable[[int], None] | None:
        """The counter for the next batch's forwards (None when the attack has no budget to measure)."""
        if not self.budget:
            return None
        attacked = int(attacked_mask(batch.y, direction).sum())
        self.start, self.size, self.expected, self.seen = start, len(batch), attacked * self.budget, 0
        return self.count

    def count(self, samples: int) -> None:
        self.seen += samples
        now = time.monotonic()
        if self.expected and now - self.said_at >= self.every_s:
            self.said_at = now
            self.on_batch(self.start + self.size * min(self.seen / self.expected, 0.99), self.total)


def score_split(
    model: Detector | FrozenModel,
    attack: Attack,
    split: Split,
    *,
    batch_size: int,
    device: torch.device,
    seed: int,
    on_batch: Callable[[int, int], None] = lambda done, total: None,
    clean_scores: torch.Tensor | None = None,
    compile: Compile | str = Compile.AUTO,
) -> pd.DataFrame:
    """Per-sample clean and adversarial scores, perturbation norms and whether the sample was attacked.

    ``clean_scores``: this model's clean margins on ``split`` (one per sample, in split order), e.g. the
    ``clean_score`` column of an earlier table; given, they are used instead of a clean forward pass.
    ``model`` may be a ``FrozenModel`` already (the caller then reads its ``runtime()``); otherwise it is
    prepared here with ``compile``."""
    if len(split) == 0:
        raise ConfigError("the evaluation split is empty: give the data set more samples (or another split)")
    if clean_scores is not None and len(clean_scores) != len(split):
        raise ValueError(f"clean_scores has {len(clean_scores)} scores for a split of {len(split)} samples")
    model = model if isinstance(model, FrozenModel) else FrozenModel(model.eval(), compile)
    model = model.to(device).eval()
    torch.manual_seed(seed)  # random starts and restarts are reproducible for a given cell
    rows = []
    done = 0
    batches = math.ceil(len(split) / batch_size)
    within = WithinBatch(on_batch, len(split), attack.forward_budget())
    for index, batch in enumerate(split.batches(batch_size)):
        batch = batch.to(device)
        if index == 0:
            model.warm_up(batch.x)  # compile (``on``) before the clock starts
        model.on_forward = within.begin(done, batch, getattr(attack, "direction", Direction.BOTH))
        tic = time.perf_counter()
        if clean_scores is None:
            with torch.inference_mode():
                clean = margin(model.exact(batch.x))  # float32, whatever the attack crafts in
        else:
            clean = clean_scores[done : done + len(batch)]
        done += len(batch)
        check_numbers(clean, "clean", index)
        out = attack.run(model, batch.x, batch.y)
        x_adv = out.x_adv
        with torch.inference_mode():
            adv = margin(model.exact(x_adv))
        check_numbers(adv, "adversarial", index)
        delta = (x_adv - batch.x).flatten(1)
        rows.append(
            {
                "clean_score": clean.float().cpu(),
                "adv_score": adv.float().cpu(),
                "linf": delta.abs().amax(1).float().cpu(),
                "l2": delta.norm(dim=1).float().cpu(),
                **{key: value.cpu() for key, value in perceptual(batch.x, x_adv).items()},
                "attacked": attacked_mask(batch.y, getattr(attack, "direction", Direction.BOTH)).cpu(),
            }
            | {key: value.float().cpu() for key, value in out.info.items()}
        )
        model.after_batch(batch.x, time.perf_counter() - tic, batches - index - 1)
        on_batch(done, len(split))
    model.on_forward = None
    columns = {key: torch.cat([r[key] for r in rows]).numpy() for key in rows[0]}
    clash = set(columns) & {"sample_id", "video_id", "method", "label"}
    if clash:
        raise ValueError(f"attack {type(attack).__name__} reports columns that clash with the table: {clash}")
    return pd.DataFrame(
        {
            "sample_id": split.sample_ids,
            "video_id": split.video_ids,
            "method": split.methods,
            "label": split.labels.numpy(),
            **columns,
        }
    )
