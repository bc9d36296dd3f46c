"""Variants and presets as the API reads them: parsing, the checks each variant gets, what a
submission records and queues, results by variant, and the presets file checked at start-up."""

import io
import json
from pathlib import Path

import pytest

from api import errors
from api.presets import PresetsError, load_presets
from api.service import JobsPorts, Upload, open_result, submit_job
from common.egress import EgressPolicy
from common.jobs import JobStatus, JobStore, ResultInfo
from common.messages import JobMessage, VariantResult
from common.variants import VariantsError, parse_variants
from tests.support.images import png_of
from tests.support.memory import MemoryObjectStore, MemoryPublisher
from tests.unit.test_service import ALICE, LIMITS

PNG = png_of((80, 60))
THREE = {
    "thumb": {"operations": "resize(width=20,height=20,fit=cover)", "output_format": "webp"},
    "large": {"operations": "resize(width=60),watermark", "output_format": "jpeg", "quality": 70},
    "same": {"operations": "flip"},
}


@pytest.fixture
def ports() -> JobsPorts:
    store = MemoryObjectStore()
    return JobsPorts(store, JobStore(store), MemoryPublisher(), EgressPolicy(), LIMITS)


def upload(**fields) -> Upload:
    return Upload(client=ALICE, file=io.BytesIO(PNG), size=len(PNG), filename="a.png", **fields)


def parse(spec) -> list:
    return parse_variants(spec, max_variants=3, max_operations=5, default_quality=85)


def test_variants_parse_in_order_with_defaults() -> None:
    variants = parse(json.dumps(THREE))
    assert [(v.name, v.output_format, v.quality) for v in variants] == [
        ("thumb", "webp", 85), ("large", "jpeg", 70), ("same", None, 85)
    ]
    assert [op.name for op in variants[1].operations] == ["resize", "watermark"]


def test_variant_operations_may_be_a_json_array() -> None:
    (variant,) = parse({"a": {"operations": [{"name": "resize", "width": 10}]}})
    assert variant.operations[0].width == 10  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("[1, 2]", "must be a JSON object"),
        ('"resize"', "must be a JSON object"),
        ("{", "not valid JSON"),
        ("{}", "no variants given"),
        ("[" * 150_000 + "]" * 150_000, "characters long"),
        ('{"a":' * 5000 + "1" + "}" * 5000, "nested too deeply"),
        (json.dumps({f"v{i}": {"operations": "flip"} for i in range(4)}), "4 variants given; at most 3"),
        (json.dumps({"../x": {"operations": "flip"}}), "variant name '../x' is not allowed"),
        (json.dumps({"": {"operations": "flip"}}), "variant name '' is not allowed"),
        (json.dumps({"a" * 1000: {"operations": "flip"}}), "is not allowed"),
        (json.dumps({"vignette-é": {"operations": "flip"}}), "is not allowed"),
        (json.dumps({"Thumb": {"operations": "flip"}}), "is not allowed"),
        (json.dumps({"a": "resize"}), "variant a: must be an object"),
        (json.dumps({"a": {"operations": {"name": "resize"}}}), "variant a: operations must be a string"),
        (json.dumps({"a": {"operations": [{"name": "resize", "width": {"x": 1}}]}}), "plain values"),
        (json.dumps({"a": {}}), "variant a: operations must be a string"),
        (json.dumps({"a": {"operations": "flip," * 6 + "flip"}}), "variant a: operations: 7 operations given"),
        (json.dumps({"a": {"operations": "explode"}}), "variant a: operations: operation 1: unknown operation"),
        (json.dumps({"a": {"operations": "flip", "output_format": "bmp"}}), "variant a: output_format 'bmp'"),
        (json.dumps({"a": {"operations": "flip", "output_format": ["png"]}}), "variant a: output_format"),
        (json.dumps({"a": {"operations": "flip", "quality": 0}}), "variant a: quality must be"),
        (json.dumps({"a": {"operations": "flip", "quality": "90"}}), "variant a: quality must be"),
        (json.dumps({"a": {"operations": "flip", "quality": True}}), "variant a: quality must be"),
        (json.dumps({"a": {"operations": "flip", "color": "keep"}}), "variant a: unknown field(s) color"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_variants_refused_naming_the_problem(spec: str, fragment: str) -> None:
    with pytest.raises(VariantsError) as caught:
        parse(spec)
    assert fragment in str(caught.value)
    assert len(str(caught.value)) < 400  # a hostile name or value is not echoed whole


# --- submission -------------------------------------------------------------------------------


def test_a_variants_upload_records_and_queues_every_variant_in_one_message(ports) -> None:
    record = submit_job(upload(variants=json.dumps(THREE)), ports)
    assert [v.name for v in record.variants] == ["thumb", "large", "same"] and record.preset is None
    # The job's own operations, format and quality are its first variant's.
    assert (record.operations, record.output_format) == (record.variants[0].operations, "webp")
    (message,) = ports.publisher.published
    assert JobMessage.model_validate_json(message.body).variants == record.variants


def test_an_operations_upload_is_one_default_variant(ports) -> None:
    record = submit_job(upload(operations="resize(width=20)", output_format="png", quality=60), ports)
    (variant,) = record.variants
    assert (variant.name, variant.output_format, variant.quality) == ("default", "png", 60)
    assert variant.operations == record.operations


def test_a_preset_upload_keeps_the_name_and_what_it_expanded_to(ports) -> None:
    ports.presets = {"pair": parse(json.dumps(THREE))[:2]}
    record = submit_job(upload(preset="pair"), ports)
    assert record.preset == "pair" and [v.name for v in record.variants] == ["thumb", "large"]
    ports.presets["pair"] = []  # a later edit of the preset
    assert [v.name for v in ports.jobs.get(record.job_id).variants] == ["thumb", "large"]


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"preset": "nope"}, "preset", "no preset 'nope'; available: none"),
        ({"preset": "x" * 1000}, "preset", "no preset"),
        ({"preset": "a", "operations": "flip"}, "preset", "preset and operations cannot be combined"),
        ({"preset": "a", "variants": "{}"}, "preset", "preset and variants cannot be combined"),
        ({"variants": json.dumps(THREE), "operations": "flip"}, "variants", "cannot be combined"),
        ({"variants": json.dumps(THREE), "output_format": "png"}, "variants", "go inside each variant"),
        ({"variants": json.dumps(THREE), "quality": 50}, "variants", "go inside each variant"),
        ({"variants": "[]"}, "variants", "variants: variants must be a JSON object"),
        ({"variants": json.dumps({"../x": {"operations": "flip"}})}, "variants", "variant name '../x'"),
        (
            {"variants": json.dumps({"big": {"operations": "resize(width=3000,height=3000,fit=fill,upscale=true)"}})},
            "variants", "variants: variant big: operations: operation 1 (resize) asks for 3000x3000",
        ),
        (
            {"variants": json.dumps({"a": {"operations": "flip"}, "logo": {"operations": "watermark(image=globex)"}})},
            "variants", "variants: variant logo: operations: operation 1 (watermark): image: no logo preset 'globex'",
        ),
        (
            {"variants": json.dumps({"a": {"operations": "flip"}, "cut": {"operations": "crop(x=70,width=20)"}})},
            "variants", "variants: variant cut: operations: operation 1 (crop): the crop box",
        ),
        (
            {"variants": json.dumps({f"v{i}": {"operations": "flip"} for i in range(11)})},
            "variants", "11 variants given; at most 10 allowed (MAX_VARIANTS)",
        ),
    ],
    ids=lambda value: str(value)[:40],
)
def test_bad_variants_or_presets_are_refused_and_nothing_is_kept(ports, fields, field, fragment) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        submit_job(upload(**fields), ports)
    assert caught.value.field == field
    assert fragment in caught.value.detail
    assert ports.store.objects == {} and ports.publisher.published == []


# --- results by variant -----------------------------------------------------------------------


def completed(ports) -> str:
    record = submit_job(upload(variants=json.dumps(THREE)), ports)
    record.start("w", 1)
    results = [
        VariantResult(name=name, key=f"results/{record.job_id}/{name}.png", width=1, height=1, bytes=len(name),
                      format="png", content_type="image/png")
        for name in ("thumb", "large", "same")
    ]
    record.complete(ResultInfo.model_validate(results[0].model_dump(exclude={"name"})), results)
    ports.jobs.save(record)
    for result in results:
        ports.store.put(result.key, result.name.encode(), "image/png")
    return record.job_id


def test_each_variant_opens_by_name_and_the_plain_result_is_the_first(ports) -> None:
    job_id = completed(ports)
    for name in ("thumb", "large", "same"):
        result, body = open_result(job_id, ALICE, ports.jobs, ports.store, name)
        assert b"".join(body) == name.encode() and result.key.endswith(f"/{name}.png")
    _, body = open_result(job_id, ALICE, ports.jobs, ports.store)
    assert b"".join(body) == b"thumb"
    assert ports.jobs.get(job_id).status is JobStatus.COMPLETED


@pytest.mark.parametrize("name", ["default", "nope", "../x", "..", "", "a" * 1000, "thumb/../large", "THUMB", "é"])
def test_an_unknown_or_malformed_variant_is_not_found(ports, name: str) -> None:
    job_id = completed(ports)
    with pytest.raises(errors.NotFound) as caught:
        open_result(job_id, ALICE, ports.jobs, ports.store, name)
    assert len(caught.value.detail) < 300


# --- presets file -----------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "presets.yaml"
    path.write_text(text)
    return path


def test_the_shipped_presets_load() -> None:
    presets = load_presets(Path(__file__).parents[2] / "presets.yaml", LIMITS)
    assert {name: len(variants) for name, variants in presets.items()} == {"avatar": 2, "responsive": 8, "social": 1}
    (card,) = presets["social"]
    assert [op.name for op in card.operations] == ["resize", "watermark"]
    assert (card.operations[0].width, card.operations[0].height, card.operations[0].fit) == (1200, 630, "cover")  # type: ignore[union-attr]


def test_no_presets_file_is_no_presets(tmp_path: Path) -> None:
    assert load_presets(None, LIMITS) == {}
    assert load_presets(write(tmp_path, ""), LIMITS) == {}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a: [", "is not valid YAML"),
        ("- a\n- b\n", "must be a mapping of preset names"),
        ("Bad Name:\n  x: {operations: flip}\n", "preset name 'Bad Name' is not allowed"),
        ("thumbs: resize\n", "preset thumbs: must be a mapping of variant names"),
        ("thumbs:\n  small: {operations: explode}\n", "preset thumbs: variant small: operations: operation 1: unknown"),
        ("thumbs:\n  small: {operations: flip, quality: 900}\n", "preset thumbs: variant small: quality"),
        ("logo:\n  a: {operations: 'watermark(image=globex)'}\n", "preset logo: variant a: operations: operation 1"),
        ("evil: !!python/object/apply:os.system ['true']\n", "is not valid YAML"),
    ],
)
def test_a_bad_preset_is_refused_naming_it(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(PresetsError) as caught:
        load_presets(write(tmp_path, text), LIMITS)
    assert fragment in str(caught.value) and "presets.yaml" in str(caught.value)


def test_a_missing_presets_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PresetsError, match="cannot be read"):
        load_presets(tmp_path / "absent.yaml", LIMITS)
