"""Moderation building blocks: prompt normalisation and blocked-term matching
(`processing/moderation.py`), and the output-image classifier hook
(`processing/image_moderation.py`), with entry points and tiny ONNX models built here."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from pixgate.processing.hanzi_variants import SIMPLIFIED, TRADITIONAL, to_simplified
from pixgate.processing.image_moderation import (
    ImageClassifier,
    check_image,
    load_classifier,
)
from pixgate.processing.moderation import TermList, TermMatcher, load_terms, normalize
from pixgate.spec.content import ImageModerationSpec

WHITE = Image.new("RGB", (40, 30), (255, 255, 255))
BLACK = Image.new("RGB", (40, 30), (0, 0, 0))


# --- normalisation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "banned",
        "BANNED",
        "BaNnEd",
        "ＢＡＮＮＥＤ",  # full-width
        "ｂａｎｎｅｄ",
        "b a n n e d",
        "b.a n-n_e d",
        "b\u200banned",  # zero-width space
        "ba\u200cn\u200dn\u2060ed\ufeff",  # ZWNJ, ZWJ, word joiner, BOM
        "ban\u00adned",  # soft hyphen
        "b\u202eanned",  # bidi override
        "b\tan\nned",
        "b\u3000a\u00a0nned",  # ideographic and no-break spaces
        "b★a♥n·n…e—d",
        "b\ufe0fanned",  # variation selector
    ],
)
def test_normalize_disguises(text: str) -> None:
    assert normalize(text) == "banned"


def test_normalize_chinese() -> None:
    assert normalize("违 禁") == "违禁"
    assert normalize("違禁") == "违禁"
    assert normalize("违\u200b禁，品！") == "违禁品"
    assert normalize("　賭　博　") == "赌博"


def test_normalize_keeps_letters_and_digits() -> None:
    assert normalize("Café ４２ naïve") == "café42naïve"
    assert normalize("cafe\u0301") == "café"  # composed by NFKC
    assert normalize("Straße") == "strasse"  # case folding
    assert normalize("") == ""
    assert normalize(" .,!? ") == ""


def test_hanzi_table_shape() -> None:
    assert len(TRADITIONAL) == len(SIMPLIFIED) > 300
    assert len(set(TRADITIONAL)) == len(TRADITIONAL)
    assert not set(TRADITIONAL) & set(SIMPLIFIED)  # one pass maps everything
    assert to_simplified("國語說話") == "国语说话"
    assert to_simplified("中文") == "中文"


# --- matching --------------------------------------------------------------------------


def test_term_matcher_finds_disguised_terms() -> None:
    m = TermMatcher(["Banned", "违禁"])
    for text in ["a ＢＡＮＮＥＤ cat", "b.a n-n_e d", "b\u200banned", "ban\u00adned", "BANNED"]:
        assert m.find(text) == "Banned", text
    assert m.find("这是违禁品") == "违禁"
    assert m.find("这是違禁品") == "违禁"
    assert m.find("这是 违 禁 品") == "违禁"


def test_traditional_term_matches_simplified_text() -> None:
    m = TermMatcher(["違禁"])
    assert m.find("违禁") == "違禁"
    assert m.find("違 禁") == "違禁"


def test_no_false_positive_on_clean_text() -> None:
    m = TermMatcher(["banned", "违禁", "gore"])
    for text in ["a cat on a mat", "一只可爱的猫", "bandana ned", "gory", "违反禁令", "", None]:
        assert m.find(text) is None, text
    # the price of removing separators: a term also matches across words (documented)
    assert m.find("go red") == "gore"


def test_leftmost_then_longest_with_original_spelling() -> None:
    m = TermMatcher(["Zeta", "ALPHA", "alpha beta", "Beta"])
    assert m.find("beta then zeta then alpha") == "Beta"
    # two terms start at the same place: the longer one
    assert m.find("xx alpha beta") == "alpha beta"
    assert m.find("xx alpha gamma") == "ALPHA"
    # a later term that is contained in a longer, earlier-starting match
    m2 = TermMatcher(["cd", "abcde"])
    assert m2.find("abcdef") == "abcde"
    m3 = TermMatcher(["bcd", "ab"])
    assert m3.find("abcd") == "ab"


def test_matcher_empty_and_blank_terms() -> None:
    assert TermMatcher([]).find("anything") is None
    m = TermMatcher(["", "  ", "...", "\u200b"])
    assert len(m) == 0
    assert m.find("...") is None
    # terms equal after normalisation count once; the first spelling is reported
    dup = TermMatcher(["Bad Word", "badword", "BAD-WORD"])
    assert len(dup) == 1
    assert dup.find("xbadwordx") == "Bad Word"


def test_matcher_concurrent_reads() -> None:
    m = TermMatcher([f"term{i}x" for i in range(200)] + ["违禁"])
    errors: list[str] = []

    def work() -> None:
        for i in range(300):
            if m.find(f"some text term{i % 200}x more") != f"term{i % 200}x":
                errors.append("miss")
            if m.find("clean text") is not None:
                errors.append("false positive")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# --- term files ------------------------------------------------------------------------


def test_load_terms(tmp_path: Path) -> None:
    f = tmp_path / "terms.txt"
    f.write_text(
        "# a comment\n\nfoo\n  bar  \n#not a term\nfoo\n违禁\n\n   \ninline\n", encoding="utf-8"
    )
    assert load_terms(["inline", " baz "], f) == ["inline", "baz", "foo", "bar", "违禁"]
    assert load_terms(["a", "a", ""], None) == ["a"]
    assert load_terms([], str(f))[0] == "foo"


def test_load_terms_missing_or_bad_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(ValueError, match=r"nope\.txt"):
        load_terms([], missing)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf\xe9\n")
    with pytest.raises(ValueError, match=r"latin1\.txt"):
        load_terms([], bad)
    with pytest.raises(ValueError, match=r"nope\.txt"):
        TermList(["x"], missing)


def test_term_list_reload(tmp_path: Path) -> None:
    f = tmp_path / "terms.txt"
    f.write_text("alpha\n", encoding="utf-8")
    terms = TermList(["inline"], f)
    assert len(terms) == 2
    assert terms.find("an ALPHA") == "alpha"
    assert terms.find("beta") is None

    f.write_text("alpha\nbeta\n# gamma\n", encoding="utf-8")
    assert terms.reload() == 3
    assert terms.find("a b e t a") == "beta"
    assert terms.find("gamma") is None
    assert terms.terms == ["inline", "alpha", "beta"]

    f.unlink()
    with pytest.raises(ValueError, match=r"terms\.txt"):
        terms.reload()
    # the previous matcher stays in force
    assert terms.find("beta") == "beta"
    assert terms.find("inline") == "inline"
    assert len(terms) == 3


def test_term_list_inline_only() -> None:
    terms = TermList(["违禁"])
    assert terms.path is None
    assert terms.reload() == 1
    assert terms.find("違禁") == "违禁"
    assert TermList().find("anything") is None


# --- image hook: config and entry points -----------------------------------------------


def mean_brightness(image: Image.Image) -> float:
    """An entry point for the tests: the image's mean grey level, 0..1."""
    grey = image.convert("L")
    return sum(grey.getdata()) / (255.0 * grey.width * grey.height)


def out_of_range(image: Image.Image) -> float:
    return 3.0


NOT_CALLABLE = 42


def test_config_validation() -> None:
    assert not ImageModerationSpec().configured
    assert ImageModerationSpec(entry_point="a.b:c").configured
    assert ImageModerationSpec(onnx_model="/m.onnx").configured
    with pytest.raises(ValidationError, match="only one"):
        ImageModerationSpec(onnx_model="/m.onnx", entry_point="a.b:c")
    for bad in (-0.1, 1.5):
        with pytest.raises(ValidationError, match="threshold"):
            ImageModerationSpec(threshold=bad)
    with pytest.raises(ValidationError, match=r"package\.module:function"):
        ImageModerationSpec(entry_point="no_colon")
    with pytest.raises(ValidationError):
        ImageModerationSpec(unknown=1)
    with pytest.raises(ValidationError):
        ImageModerationSpec(input_size=0)
    assert load_classifier(ImageModerationSpec()) is None


def test_entry_point_scores_and_threshold() -> None:
    config = ImageModerationSpec(entry_point=f"{__name__}:mean_brightness", threshold=0.5)
    classifier = load_classifier(config)
    assert isinstance(classifier, ImageClassifier)
    assert classifier.score(WHITE) == pytest.approx(1.0)
    assert classifier.score(BLACK) == pytest.approx(0.0)
    assert check_image(classifier, WHITE, config.threshold) == pytest.approx(1.0)
    assert check_image(classifier, BLACK, config.threshold) is None
    grey = Image.new("RGB", (8, 8), (128, 128, 128))
    assert check_image(classifier, grey, 0.5) == pytest.approx(128 / 255)
    assert check_image(classifier, grey, 128 / 255) is not None  # >= refuses
    assert check_image(classifier, grey, 0.51) is None


@pytest.mark.parametrize(
    ("entry_point", "message"),
    [
        ("pixgate_no_such_module:fn", "cannot import"),
        (f"{__name__}:no_such_function", "has no"),
        (f"{__name__}:NOT_CALLABLE", "not callable"),
    ],
)
def test_entry_point_errors(entry_point: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        load_classifier(ImageModerationSpec(entry_point=entry_point))
    assert entry_point in str(info.value)


def test_entry_point_bad_score_and_exceptions_propagate(tmp_path: Path, monkeypatch) -> None:
    classifier = load_classifier(ImageModerationSpec(entry_point=f"{__name__}:out_of_range"))
    assert classifier is not None
    with pytest.raises(ValueError, match="not a score"):
        check_image(classifier, WHITE, 0.5)
    # an entry point from a module outside the package, raising
    (tmp_path / "pixgate_test_hook.py").write_text(
        "def boom(image):\n    raise RuntimeError('classifier down')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    failing = load_classifier(ImageModerationSpec(entry_point="pixgate_test_hook:boom"))
    assert failing is not None
    with pytest.raises(RuntimeError, match="classifier down"):
        check_image(failing, WHITE, 0.5)


# --- image hook: ONNX ------------------------------------------------------------------


def _onnx_model(path: Path, kind: str) -> Path:
    """A tiny classifier over a [1, 3, H, W] input: the mean pixel value m as one score
    ("mean"), as one logit 8 (m - 0.5) ("logit"), as two-class logits [0, 8 (m - 0.5)]
    ("two"), or as the two-class softmax of those ("probs")."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    def const(name: str, value: float) -> onnx.TensorProto:
        return helper.make_tensor(name, TensorProto.FLOAT, [], [value])

    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["m4", "shape"], ["m"]),
    ]
    initializers = [
        helper.make_tensor("shape", TensorProto.INT64, [2], [1, 1]),
        const("half", 0.5),
        const("eight", 8.0),
        const("zero", 0.0),
    ]
    width = 1
    if kind == "mean":
        nodes.append(helper.make_node("Identity", ["m"], ["y"]))
    else:
        nodes += [
            helper.make_node("Sub", ["m", "half"], ["d"]),
            helper.make_node("Mul", ["d", "eight"], ["logit" if kind != "logit" else "y"]),
        ]
        if kind in ("two", "probs"):
            width = 2
            out = "y" if kind == "two" else "logits"
            nodes += [
                helper.make_node("Mul", ["m", "zero"], ["z"]),
                helper.make_node("Concat", ["z", "logit"], [out], axis=1),
            ]
            if kind == "probs":
                nodes.append(helper.make_node("Softmax", ["logits"], ["y"], axis=1))
    graph = helper.make_graph(
        nodes,
        f"pixgate-test-{kind}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, None, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    target = path / f"{kind}.onnx"
    onnx.save(model, str(target))
    return target


def _onnx_classifier(tmp_path: Path, kind: str, input_size: int = 16) -> ImageClassifier:
    pytest.importorskip("onnxruntime")
    model = _onnx_model(tmp_path, kind)
    config = ImageModerationSpec(onnx_model=str(model), input_size=input_size)
    classifier = load_classifier(config)
    assert classifier is not None
    return classifier


def test_onnx_single_score(tmp_path: Path) -> None:
    classifier = _onnx_classifier(tmp_path, "mean")
    assert classifier.score(WHITE) == pytest.approx(1.0, abs=1e-6)
    assert classifier.score(BLACK) == pytest.approx(0.0, abs=1e-6)
    rgba = Image.new("RGBA", (7, 50), (255, 0, 0, 0))  # converted to RGB: mean 1/3
    assert classifier.score(rgba) == pytest.approx(1 / 3, abs=1e-5)
    assert check_image(classifier, WHITE, 0.5) == pytest.approx(1.0, abs=1e-6)
    assert check_image(classifier, BLACK, 0.5) is None


def test_onnx_single_logit_is_sigmoided(tmp_path: Path) -> None:
    classifier = _onnx_classifier(tmp_path, "logit")
    expected = 1 / (1 + 2.718281828459045**-4)
    assert classifier.score(WHITE) == pytest.approx(expected, abs=1e-5)
    assert classifier.score(BLACK) == pytest.approx(1 - expected, abs=1e-5)


@pytest.mark.parametrize("kind", ["two", "probs"])
def test_onnx_two_classes_last_is_unsafe(tmp_path: Path, kind: str) -> None:
    classifier = _onnx_classifier(tmp_path, kind, input_size=32)
    expected = 1 / (1 + 2.718281828459045**-4)  # softmax([0, 4])[1]
    assert classifier.score(WHITE) == pytest.approx(expected, abs=1e-5)
    assert classifier.score(BLACK) == pytest.approx(1 - expected, abs=1e-5)
    assert check_image(classifier, WHITE, 0.9) is not None
    assert check_image(classifier, BLACK, 0.5) is None


def test_onnx_preprocessing_shape(tmp_path: Path) -> None:
    classifier = _onnx_classifier(tmp_path, "mean", input_size=24)
    x = classifier.preprocess(Image.new("L", (5, 9), 255))  # type: ignore[attr-defined]
    assert x.shape == (1, 3, 24, 24)
    assert str(x.dtype) == "float32"
    assert float(x.max()) == pytest.approx(1.0)


def test_onnx_load_errors(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    with pytest.raises(ValueError, match=r"missing\.onnx"):
        load_classifier(ImageModerationSpec(onnx_model=str(tmp_path / "missing.onnx")))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"junk\.onnx"):
        load_classifier(ImageModerationSpec(onnx_model=str(junk)))


def test_onnx_without_onnxruntime(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with pytest.raises(ValueError, match="pip install onnxruntime"):
        load_classifier(ImageModerationSpec(onnx_model=str(tmp_path / "m.onnx")))
