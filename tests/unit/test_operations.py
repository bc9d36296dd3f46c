"""The operations grammar: what parses, what is refused, and how the refusal reads."""

import json

import pytest

from common.messages import JobMessage
from common.operations import (
    OPERATION_MODELS,
    Filter,
    OperationsError,
    Resize,
    Watermark,
    parse_operations,
)


def parse(spec: str, limit: int = 20):
    return parse_operations(spec, limit)


def test_parse_bare_names_get_defaults() -> None:
    assert parse("resize,watermark") == [Resize(width=800, height=800), Watermark()]


def test_parse_parameters_in_order() -> None:
    ops = parse(
        "resize(width=800,height=600,fit=cover),watermark(text=ACME,position=bottom-right,opacity=0.5),"
        "filter(name=blur,radius=2)"
    )
    assert ops == [
        Resize(width=800, height=600, fit="cover"),
        Watermark(text="ACME", position="bottom-right", opacity=0.5),
        Filter(filter="blur", radius=2),
    ]


def test_parse_quoted_text_keeps_commas_and_parentheses() -> None:
    (op,) = parse('watermark(text="Hello, (world)",position=tile)')
    assert op.text == "Hello, (world)"
    assert op.position == "tile"


def test_parse_width_only_keeps_height_open() -> None:
    (op,) = parse("resize(width=300)")
    assert (op.width, op.height, op.upscale) == (300, None, False)


def test_parse_json_array() -> None:
    ops = parse(json.dumps([{"name": "resize", "width": 640}, {"name": "filter", "type": "sepia"}]))
    assert ops == [Resize(width=640), Filter(filter="sepia")]


def test_parse_filter_type_and_name_are_synonyms_in_text() -> None:
    assert parse("filter(type=emboss)") == parse("filter(name=emboss)")


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (
            "explode",
            "unknown operation 'explode'; allowed: autocontrast, brightness, contrast, crop, filter, flip, "
            "pixelate, resize, rotate, saturation, watermark",
        ),
        ("resize(wdth=3)", "unknown parameter 'wdth'; parameters allowed: width, height, fit, upscale"),
        ("resize(width=0)", "width: Input should be greater than or equal to 1"),
        ("resize(width=1000000000)", "width: Input should be less than or equal to 16384"),
        ("resize(width=abc)", "width: Input should be a valid integer"),
        ("resize(fit=cover,width=10)", "fit=cover needs both width and height"),
        ("resize(fit=squash)", "fit: Input should be 'contain', 'cover', 'fill' or 'pad'"),
        ("filter(name=blur,radius=-1)", "radius: Input should be greater than 0"),
        ("filter(name=sepia,radius=2)", "radius applies to blur only"),
        ("filter(name=posterize)", "type: Input should be 'grayscale'"),
        ("watermark(opacity=2)", "opacity: Input should be less than or equal to 1"),
        ("watermark(text=)", "text: String should have at least 1 character"),
        ("resize(name=x)", "'name' is not one of its parameters"),
        ("resize(width=3", "unbalanced parentheses"),
        ('watermark(text="open)', "unterminated quote"),
        ("resize,,watermark", "empty operation"),
        ("resize(width)", "expected key=value"),
        ("", "no operations given"),
        ("[{\"width\": 3}]", "unknown operation None"),
        ("[1, 2]", "array of objects"),
        ("[not json", "not valid JSON"),
    ],
)
def test_parse_rejects_with_a_message_naming_the_problem(spec: str, fragment: str) -> None:
    with pytest.raises(OperationsError) as caught:
        parse(spec)
    assert fragment in str(caught.value)


def test_parse_rejects_too_many_operations() -> None:
    with pytest.raises(OperationsError, match="10000 operations given; at most 20 allowed"):
        parse(",".join(["resize"] * 10000))


def test_parse_error_names_the_position_of_the_bad_operation() -> None:
    with pytest.raises(OperationsError, match=r"^operation 3 \(filter\)"):
        parse("resize,watermark,filter(name=nope)")


def test_operations_survive_the_job_message_round_trip() -> None:
    ops = parse("resize(width=10,height=20,fit=fill,upscale=true),watermark(size=0.1),filter(name=invert)")
    message = JobMessage(
        job_id="0" * 32, original_key="originals/x", operations=ops, submitted_at="2026-01-01T00:00:00Z"
    )
    assert JobMessage.model_validate_json(message.model_dump_json()).operations == ops


# Operations that mean nothing without a parameter: a bare name is refused, naming what is missing.
NEEDS_A_PARAMETER = {"crop": "give a box", "brightness": "factor", "contrast": "factor", "saturation": "factor"}


def test_every_operation_has_a_default_instance_or_names_what_it_needs() -> None:
    for name, model in OPERATION_MODELS.items():
        if name in NEEDS_A_PARAMETER:
            with pytest.raises(OperationsError, match=NEEDS_A_PARAMETER[name]):
                parse(name)
        else:
            assert model().name == name and parse(name) == [model()]
