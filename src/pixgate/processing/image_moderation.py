"""The optional output-image classifier: scores each generated image, refused at a threshold.

Configured as `[image_moderation]` (`ImageModerationSpec`) with one of two hooks:

- `entry_point = "package.module:function"`: a Python function that takes a PIL image and
  returns a float in 0..1, the probability that the image is unlawful or unsafe.
- `onnx_model = "/path/model.onnx"`: an ONNX classifier run with onnxruntime (CUDA when that
  provider is available, else CPU; `pip install onnxruntime`). The model follows this
  convention:

  * input: its first input, a float32 NCHW batch of one RGB image, resized to
    `input_size` x `input_size` (no aspect kept), values 0..1 (pixel / 255, no mean or std);
  * output: its first output, read as a flat list of numbers.
    One number: the unsafe score itself; a number outside 0..1 is taken as a logit and
    passed through a sigmoid. Two or more: one per class, with the LAST class "unsafe";
    they are taken as probabilities when they already are a distribution (each in 0..1,
    summing to 1), else as logits and passed through a softmax. The score is the last
    class's probability.

  A model with other preprocessing or class order is wrapped (in the ONNX graph, or as an
  entry point) to fit. NudeNet could serve as such a model, but its wheel's bundled LICENSE
  is AGPL-3.0 while its metadata says MIT, so pixgate does not depend on it; an operator may
  point `onnx_model` at any model that follows the convention.

`check_image` gives the score when it reaches the threshold (the image is refused), else
None. Classifier exceptions propagate: the caller decides what a failed check means.
"""

from __future__ import annotations

import importlib
import math
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pixgate.spec.content import ImageModerationSpec

if TYPE_CHECKING:
    from collections.abc import Callable

    from PIL import Image


@runtime_checkable
class ImageClassifier(Protocol):
    """Scores an image: the probability, 0..1, that it is unlawful or unsafe."""

    def score(self, image: Image.Image) -> float: ...


def _checked(score: Any, source: str) -> float:
    try:
        value = float(score)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source} returned {score!r}, not a number") from exc
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{source} returned {value!r}, not a score in 0..1")
    return value


class EntryPointClassifier:
    """A Python function as the classifier; its result must be a number in 0..1."""

    def __init__(self, name: str, function: Callable[[Image.Image], float]) -> None:
        self.name = name
        self._function = function

    def score(self, image: Image.Image) -> float:
        return _checked(self._function(image), f"image_moderation entry point {self.name!r}")


def _scores_to_unsafe(values: list[float]) -> float:
    """The unsafe probability from a model's first output (the module's convention)."""
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"the ONNX classifier's output {values!r} is not a score")
    if len(values) == 1:
        value = values[0]
        if 0.0 <= value <= 1.0:
            return value
        # a logit: the sigmoid, in the form that cannot overflow
        if value >= 0:
            return 1.0 / (1.0 + math.exp(-value))
        return math.exp(value) / (1.0 + math.exp(value))
    if all(0.0 <= v <= 1.0 for v in values) and abs(sum(values) - 1.0) <= 1e-3:
        return values[-1]
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return exps[-1] / sum(exps)


class OnnxClassifier:
    """An ONNX model run with onnxruntime, following the convention in the module docstring.

    onnxruntime's `InferenceSession.run` may be called from several threads at once."""

    def __init__(self, path: str | Path, input_size: int = 224) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ValueError(
                "image_moderation.onnx_model needs onnxruntime: pip install onnxruntime"
            ) from exc
        model = Path(path).expanduser()
        if not model.is_file():
            raise ValueError(f"image_moderation.onnx_model {str(path)!r} is not a file")
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider",) if p in available]
        providers.append("CPUExecutionProvider")
        try:
            self._session = ort.InferenceSession(str(model), providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(
                f"image_moderation.onnx_model {str(path)!r} cannot be loaded: {exc}"
            ) from exc
        self._input = self._session.get_inputs()[0].name
        self.path = model
        self.input_size = input_size
        self.providers = self._session.get_providers()

    def preprocess(self, image: Image.Image) -> Any:
        """`image` as the model's input: RGB, input_size square, float32 0..1, NCHW, batch 1."""
        import numpy as np
        from PIL import Image as PILImage

        side = self.input_size
        rgb = image.convert("RGB").resize((side, side), PILImage.Resampling.BILINEAR)
        pixels = np.asarray(rgb, dtype=np.float32) / 255.0
        return np.ascontiguousarray(pixels.transpose(2, 0, 1)[np.newaxis])

    def score(self, image: Image.Image) -> float:
        import numpy as np

        output = self._session.run(None, {self._input: self.preprocess(image)})[0]
        values = [float(v) for v in np.asarray(output, dtype=np.float64).ravel()]
        return _checked(_scores_to_unsafe(values), f"image_moderation model {str(self.path)!r}")


def _load_entry_point(name: str) -> EntryPointClassifier:
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name.strip())
    except ImportError as exc:
        raise ValueError(
            f"image_moderation.entry_point {name!r}: cannot import {module_name!r}: {exc}"
        ) from exc
    try:
        function = reduce(getattr, attr.strip().split("."), module)
    except AttributeError as exc:
        raise ValueError(
            f"image_moderation.entry_point {name!r}: {module_name!r} has no {attr!r}"
        ) from exc
    if not callable(function):
        raise ValueError(f"image_moderation.entry_point {name!r} is not callable")
    return EntryPointClassifier(name, function)


def load_classifier(config: ImageModerationSpec) -> ImageClassifier | None:
    """The configured classifier, or None when no hook is set. ValueError (naming the
    entry point or model) when it cannot be loaded."""
    if config.entry_point is not None:
        return _load_entry_point(config.entry_point)
    if config.onnx_model is not None:
        return OnnxClassifier(config.onnx_model, config.input_size)
    return None


def check_image(classifier: ImageClassifier, image: Image.Image, threshold: float) -> float | None:
    """The image's score when it reaches `threshold` (the image is refused), else None.
    Exceptions raised by the classifier propagate."""
    score = classifier.score(image)
    return score if score >= threshold else None
