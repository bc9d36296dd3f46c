"""watermark(image=...): a logo preset from the configured folder, placed like text; names only."""

from pathlib import Path

import pytest
from PIL import Image

from common import logos
from common.operations import Watermark
from worker.processors import NotApplicable, apply, watermark

LOGO_COLOUR = (200, 30, 30, 255)


@pytest.fixture
def logo_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    Image.new("RGBA", (200, 100), LOGO_COLOUR).save(tmp_path / "acme.png")
    monkeypatch.setattr(watermark, "_logo_dir", tmp_path)
    return tmp_path


def test_the_shipped_folder_has_the_projects_logo() -> None:
    assert "imgpipe" in logos.preset_names(logos.logo_dir(None))


def test_a_logo_is_drawn_at_its_size_and_position(logo_folder: Path) -> None:
    image = Image.new("RGB", (400, 300), (255, 255, 255))

    result = apply(image, Watermark(image="acme", position="top-left", size=0.2, opacity=1))

    # 20 % of the shorter side is 60 px high, so 120 px wide; the margin is 2 % of 300 = 6 px
    assert result.getpixel((10, 10)) == LOGO_COLOUR[:3] and result.getpixel((120, 60)) == LOGO_COLOUR[:3]
    assert result.getpixel((130, 10)) == (255, 255, 255) and result.getpixel((10, 70)) == (255, 255, 255)


def test_a_logo_keeps_the_mode_fades_and_tiles(logo_folder: Path) -> None:
    grey = apply(Image.new("L", (400, 300), 255), Watermark(image="acme", position="center", opacity=0.5))
    assert grey.mode == "L" and 150 < grey.getpixel((200, 150)) < 220

    tiled = apply(Image.new("RGBA", (400, 300), (0, 0, 0, 0)), Watermark(image="acme", position="tile", size=0.1))
    covered = sum(1 for alpha in tiled.getchannel("A").get_flattened_data() if alpha)
    assert tiled.mode == "RGBA" and 0.1 < covered / (400 * 300) < 0.7


def test_a_missing_or_unreadable_logo_fails_the_operation(logo_folder: Path) -> None:
    with pytest.raises(NotApplicable, match="no logo preset 'globex'") as missing:
        apply(Image.new("RGB", (100, 100)), Watermark(image="globex"))
    assert missing.value.reason == "unknown_logo"

    (logo_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(NotApplicable, match="cannot be read"):
        apply(Image.new("RGB", (100, 100)), Watermark(image="broken"))


def test_a_logo_over_the_pixel_limit_is_refused(logo_folder: Path) -> None:
    Image.new("L", (2001, 2000)).save(logo_folder / "huge.png")
    with pytest.raises(NotApplicable, match="over 4000000 pixels"):
        apply(Image.new("RGB", (100, 100)), Watermark(image="huge"))


def test_only_plain_png_files_with_preset_names_are_presets(tmp_path: Path) -> None:
    for name in ("good.png", "Bad.png", "notes.txt", ".hidden.png", "a b.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(tmp_path / "good.png")
    (tmp_path / "dir.png").mkdir()
    assert logos.preset_names(tmp_path) == {"good"}
    assert logos.logo_path(tmp_path, "link") is None and logos.logo_path(tmp_path, "../good") is None
    assert logos.preset_names(tmp_path / "missing") == frozenset()


def test_the_settings_name_one_folder_for_the_api_and_the_worker(tmp_path: Path) -> None:
    from common.settings import Settings

    Image.new("RGBA", (20, 10)).save(tmp_path / "acme.png")
    configured = Settings(watermark_dir=tmp_path)
    assert configured.uploads.logos == {"acme"} and configured.worker.logo_dir == tmp_path
    default = Settings(watermark_dir=None)
    assert "imgpipe" in default.uploads.logos and default.worker.logo_dir == logos.SHIPPED_DIR


def test_the_image_process_draws_logos_from_the_folder_it_is_given(logo_folder: Path) -> None:
    from io import BytesIO

    from worker.isolation import PipelineProcess, PipelineRequest

    source = BytesIO()
    Image.new("RGB", (400, 300), "white").save(source, "PNG")
    process = PipelineProcess(memory_limit_mb=0)
    try:
        result = process.run(PipelineRequest(
            data=source.getvalue(), operations=[Watermark(image="acme", position="top-left", size=0.2, opacity=1)],
            output_format="png", quality=85, max_pixels=1_000_000, max_output_pixels=1_000_000, time_limit_s=30,
            logo_dir=logo_folder,
        ))
    finally:
        process.close()
    assert Image.open(BytesIO(result.data)).convert("RGB").getpixel((10, 10)) == LOGO_COLOUR[:3]
