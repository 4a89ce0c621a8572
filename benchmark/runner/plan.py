"""Planning: names and ``--set`` overrides become a validated, content-addressed ``CellSpec``, and a stored
spec becomes objects again.

Nothing here trains, loads data or touches the store: ``plan_cell`` is pure, so a sweep validates every cell
(names, parameter names and values, the surrogates an attack asks for) before anything runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from afsl_bench.attacks import ATTACKS, Attack
from afsl_bench.core.decision import DecisionRule, parse_decision_rule
from afsl_bench.core.errors import ConfigError, DataNotFoundError
from afsl_bench.core.params import coerce, split_overrides, typed_params
from afsl_bench.core.registry import Registry, locations, omitted_at_default, params_of_builder
from afsl_bench.core.spec import SAMPLES, THRESHOLD, CellSpec, Component, EvalSettings, TrainSpec, to_jsonable
from afsl_bench.core.types import DataBundle
from afsl_bench.data import DATASETS
from afsl_bench.defenses import DEFENSES
from afsl_bench.defenses.base import Defense
from afsl_bench.defenses.training import TrainSettings
from afsl_bench.detectors import DETECTORS
from afsl_bench.detectors.base import Detector

#: the prefixes ``--set`` accepts: ``data`` is the training set, ``eval`` the evaluation set
KINDS = ("detector", "defense", "attack", "data", "eval", "train")

#: the validation share an evaluation-only folder keeps under ``eval.threshold=eer`` (the folder's default)
FOLDER_VAL_SHARE = 0.2
#: the parameters that say where a data set lies; an evaluation set other than the training set keeps its own
LOCATION = ("prepared", "root")
#: a data set's content digest in its component (``content_id`` of ``folder`` and the prepared stores)
CONTENT = "content"


def plan_cell(
    detector: str,
    defense: str,
    attack: str,
    dataset: str,
    eval_dataset: str | None = None,
    overrides: list[str] | None = None,
    seed: int = 0,
) -> CellSpec:
    """Validate names and overrides and build the content-addressed spec (no training, no data)."""
    raw = split_overrides(overrides or [], list(KINDS))
    if _settings_component(raw["train"]).params.get("epochs") == 0:
        size = published_resolution(detector, raw["detector"].get("weights"))
        rule_text = raw["eval"].get(THRESHOLD)
        raw["data"] = evaluation_only_data(dataset, raw["data"], rule_text, size)
        if eval_dataset is not None:
            raw["eval"] = evaluation_only_data(eval_dataset, raw["eval"], rule_text, size)
    training = _training(detector, defense, dataset, raw, seed)
    attack_c = _component(ATTACKS, "attack", attack, raw["attack"])
    check_surrogates(build_attack(attack_c))
    eval_name = eval_dataset or dataset
    eval_params = DATASETS.params_of(eval_name)
    # an evaluation set shares the training set's settings (resolution, seed, ...) but never its location:
    # `ff++`'s store is not `faceshifter`'s
    inherited = {
        k: v
        for k, v in raw["data"].items()
        if k in eval_params and (eval_name == dataset or k not in LOCATION)
    }
    evaluation = EvalSettings(
        parse_decision_rule(raw["eval"].pop(THRESHOLD, None)), parse_samples(raw["eval"].pop(SAMPLES, None))
    )
    eval_c = _component(DATASETS, "eval", eval_name, inherited | raw["eval"])
    return CellSpec(training, attack_c, eval_c, evaluation)


def plan_training(
    detector: str, defense: str, dataset: str, overrides: list[str] | None = None, seed: int = 0
) -> TrainSpec:
    """The spec of a trained model alone (``--set`` kinds detector, defense, data and train)."""
    raw = split_overrides(overrides or [], ["detector", "defense", "data", "train"])
    return _training(detector, defense, dataset, raw, seed)


def _training(
    detector: str, defense: str, dataset: str, raw: dict[str, dict[str, str]], seed: int
) -> TrainSpec:
    defense_c = _component(DEFENSES, "defense", defense, raw["defense"])
    detector_c = _component(DETECTORS, "detector", detector, _with_head(raw["detector"], defense))
    train_c = _settings_component(raw["train"])
    if evaluation_only(train_c):
        check_evaluation_only(detector_c, defense_c)
    data_c = _component(DATASETS, "data", dataset, raw["data"])
    if data_c.params.get("val_fraction") == 0 and not evaluation_only(train_c):
        raise ConfigError(
            f"data.val_fraction=0 leaves {dataset} no validation split, which training needs (the kept epoch "
            "and the threshold are chosen on it): give it a share in (0, 1), e.g. --set data.val_fraction=0.2 "
            "(0 is for evaluating published weights, train.epochs=0)"
        )
    return TrainSpec(detector_c, defense_c, data_c, train_c, seed)


def evaluation_only(train: Component) -> bool:
    """``train.epochs=0``: the detector's weights are evaluated as they are, nothing is trained."""
    return train.params.get("epochs") == 0


def check_evaluation_only(detector: Component, defense: Component) -> None:
    """Evaluating without training needs weights to evaluate and no defense (a defense is a training loss)."""
    if "weights" not in detector.params:
        raise ConfigError(
            f"train.epochs=0 evaluates the detector's weights as they are, and {detector.name} has none set (a "
            f"random network has nothing to evaluate): --set detector.weights=FILE (afsl-bench list detectors "
            "shows the published ones, e.g. mesonet:Meso4_DF), or train it (train.epochs >= 1)"
        )
    if defense.name != "none":
        raise ConfigError(
            f"train.epochs=0 evaluates the weights as they are, but --defense {defense.name} trains: use "
            f"--defense none, or fine-tune the weights with it (train.epochs >= 1 starts from them)"
        )


def published_resolution(detector: str, weights: str | None) -> int | None:
    """The input size a published checkpoint was trained at (its source's layout: MesoNet 256 px), or None."""
    from afsl_bench.detectors.weights import split_source

    source, _ = split_source(weights) if weights else (None, None)
    if source is None:
        return None
    return source.layout(detector).input_size


def evaluation_only_data(
    dataset: str, raw_data: dict[str, str], rule_text: str | None, size: int | None
) -> dict[str, str]:
    """The data of an evaluation-only cell, where the user left them unset: a published checkpoint's own
    input size (a data set with a ``resolution``), and a ``folder`` scored whole (no training split is
    needed; with ``eval.threshold=eer`` it keeps the default validation share to fix the threshold on)."""
    if size is not None and "resolution" in DATASETS.params_of(dataset) and "resolution" not in raw_data:
        raw_data = raw_data | {"resolution": str(size)}
    if dataset != "folder" or {"val_fraction", "test_fraction"} & set(raw_data):
        return raw_data
    if parse_decision_rule(rule_text) is DecisionRule.EER:
        return raw_data | {"test_fraction": str(1 - FOLDER_VAL_SHARE), "val_fraction": str(FOLDER_VAL_SHARE)}
    return raw_data | {"test_fraction": "1.0", "val_fraction": "0.0"}


def component_of(registry: Registry, name: str, params: dict[str, Any]) -> Component:
    """A component with its complete parameters from typed values (defaults filled in): its config is made,
    so ``__post_init__`` validates every value now, and nothing is built (no network, no data loaded).

    A parameter marked ``OmitAtDefault`` stays out while it holds its default (with its file's digest beside
    it when set), and a data set whose contents can change under one name adds what it holds (``content_id``:
    a user's folder, a prepared store), so changed data never reuses an old record."""
    config = registry.config(name, **params)
    defaults = registry.params_of(name)
    full = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    for key, mark in omitted_at_default(type(config)).items():
        if full[key] == defaults[key].default:
            del full[key]
        elif mark.digest is not None:
            full[f"{key}_sha256"] = mark.digest(full[key])
    if (content := getattr(config, "content_id", None)) and (digest := content()) is not None:
        full[CONTENT] = digest
    version = getattr(config, "version", registry.version)
    return Component(name, to_jsonable(full), version, locations(type(config)))


def check_surrogates(attack: Attack) -> None:
    """The models an attack asks for besides its target (a transfer attack's surrogate) must be registered:
    an unknown name fails here, before any training, with the registry's "did you mean"."""
    for request in attack.surrogates():
        wanted = [(DETECTORS, request.detector), (DEFENSES, request.defense), (DATASETS, request.data)]
        for registry, name in wanted:
            if name is not None and name not in registry:
                try:
                    registry.get(name)
                except ConfigError as err:
                    raise ConfigError(f"attack '{attack.registered_name}' surrogate: {err}") from None


def surrogate_spec(target: TrainSpec, detector: str, defense: str, seed: int, data: str | None) -> TrainSpec:
    """The training spec of a surrogate: a registered detector + defense with their defaults and the target's
    head (so a suite that compares defenses on one head crafts its transfer examples on that head, and a
    surrogate that is also a target of the suite is trained once), trained with the target's settings on
    the target's training data unless another data set is named."""
    head = target.detector.params.get("head")
    detector_raw = {"head": str(head)} if head is not None and "head" in DETECTORS.params_of(detector) else {}
    return TrainSpec(
        _component(DETECTORS, "detector", detector, detector_raw),
        _component(DEFENSES, "defense", defense, {}),
        target.train_data if data is None else _component(DATASETS, "data", data, {}),
        target.train,
        seed,
    )


def parse_samples(text: str | int | None) -> int | None:
    """``eval.samples`` (a string from ``--set``, or an int from the API) -> a positive count, or None."""
    if text is None:
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"eval.samples={text}: give a positive number of test images (or leave it unset)")
    return n


def _with_head(detector_raw: dict[str, str], defense: str) -> dict[str, str]:
    """A detector without ``detector.head`` gets its defense's own head (AFSL: the paper's cosine head);
    a head the user chose is kept, whatever the defense: every defense trains with any head."""
    paper_head = getattr(DEFENSES.get(defense), "head", None)
    if paper_head is None or "head" in detector_raw:
        return detector_raw
    return detector_raw | {"head": str(paper_head)}


def _component(registry: Registry, kind: str, name: str, raw: dict[str, str]) -> Component:
    """A component from ``--set`` strings, typed by its own annotations (``kind`` names it in errors)."""
    return component_of(registry, name, typed_params(kind, name, raw, registry.params_of(name)))


def _settings_component(raw: dict[str, str]) -> Component:
    typed = typed_params("train", "settings", raw, params_of_builder(TrainSettings))
    try:
        settings = TrainSettings(**typed)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"train settings: {err}") from err
    return Component("train", to_jsonable(dataclasses.asdict(settings)))


# ------------------------------------------------------------------------------ specs back into objects


def typed_from_spec(builder: Callable[..., Any], c: Component) -> dict[str, Any]:
    """A stored component's JSON params back to typed values via the builder's own annotations."""
    params = params_of_builder(builder)
    return {k: coerce(v, params[k].annotation) for k, v in c.params.items() if k in params}


def build_attack(c: Component) -> Attack:
    return ATTACKS.build(c.name, **typed_from_spec(ATTACKS.get(c.name), c))


def build_defense(c: Component) -> Defense:
    return DEFENSES.build(c.name, **typed_from_spec(DEFENSES.get(c.name), c))


def build_detector(c: Component) -> Detector:
    return DETECTORS.build(c.name, **typed_from_spec(DETECTORS.get(c.name), c))


def build_settings(c: Component) -> TrainSettings:
    return TrainSettings(**typed_from_spec(TrainSettings, c))


def load_dataset(c: Component) -> DataBundle:
    return DATASETS.build(c.name, **typed_from_spec(DATASETS.get(c.name), c))


def missing_locations(cell: CellSpec) -> list[tuple[str, str, str]]:
    """The data locations of a cell that do not exist, as ``(kind.key, value, data set)``: a folder's
    ``root`` (required), a store path given as ``prepared``. Found before any work, named by the key the user
    sets (``eval.root`` for the ``--eval-dataset``, not ``data.root``)."""
    missing = []
    for kind, component in (("data", cell.training.train_data), ("eval", cell.eval_data)):
        for key in component.location:
            value = str(component.params.get(key, ""))
            present = (
                bool(value) and Path(value).expanduser().is_dir()
            )  # Path('') would be the current folder
            if (value or component.name == "folder") and not present:
                missing.append((f"{kind}.{key}", value, component.name))
    return missing


def check_locations(cell: CellSpec) -> None:
    """A one-line error for the first missing data location of ``missing_locations``."""
    for name, value, dataset in missing_locations(cell)[:1]:
        what = (
            f"a prepared store of {dataset} (afsl-bench prepare {dataset} --root RAW --out PATH writes one)"
            if name.endswith(".prepared")
            else f"the {dataset} data set's folder (afsl-bench list datasets says what it expects)"
        )
        raise DataNotFoundError(f"{name} '{value}' is not a folder: pass {what} with --set {name}=PATH")
