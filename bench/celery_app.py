"""The contender: what most Python teams would build instead of imgpipe, as Celery's documentation
shows it. Not our pipeline on purpose: plain Pillow as a typical team writes it.

    celery -A bench.celery_app worker --concurrency 2      # prefork, Celery's defaults otherwise

The client uploads the original to the bucket, then `make_thumbnail.apply_async((key, result_key))`;
the task downloads it with the minio client, fixes the orientation, fits it in 800×800, draws the
text in the bottom-right corner at half opacity, saves JPEG quality 85, uploads the result and
returns its size (the result travels back over `rpc://`, a reply queue on the same RabbitMQ).

Configured from the environment: BENCH_CELERY_BROKER (an amqp:// URL with the bench's vhost),
BENCH_S3_ENDPOINT, BENCH_S3_BUCKET, BENCH_S3_ACCESS_KEY, BENCH_S3_SECRET_KEY.
"""

import io
import os
import time
from functools import cache

from celery import Celery
from minio import Minio
from PIL import Image, ImageDraw, ImageFont, ImageOps

app = Celery(
    "imgpipe_bench",
    broker=os.environ.get("BENCH_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    backend="rpc://",
)
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])

BUCKET = os.environ.get("BENCH_S3_BUCKET", "images")
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


@cache
def storage() -> Minio:
    """One client per worker process (created after the prefork pool forks)."""
    return Minio(
        os.environ.get("BENCH_S3_ENDPOINT", "127.0.0.1:8333"),
        access_key=os.environ.get("BENCH_S3_ACCESS_KEY", "minioadmin"),
        secret_key=os.environ.get("BENCH_S3_SECRET_KEY", "minioadmin"),
        secure=False,
    )


@app.task
def make_thumbnail(source_key: str, result_key: str, text: str = "imgpipe", quality: int = 85) -> dict:
    response = storage().get_object(BUCKET, source_key)
    try:
        data = response.read()
    finally:
        response.close()
        response.release_conn()

    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    image.thumbnail((800, 800))

    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    size = max(8, round(min(image.size) * 0.05))
    font = ImageFont.truetype(FONT, size)
    stroke = max(1, round(size / 12))
    _left, _top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
    margin = round(min(image.size) * 0.02)
    position = (image.width - right - margin, image.height - bottom - margin)
    draw.text(position, text, font=font, fill=(255, 255, 255, 128), stroke_width=stroke, stroke_fill=(0, 0, 0, 128))
    image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")

    output = io.BytesIO()
    image.save(output, "JPEG", quality=quality)
    storage().put_object(
        BUCKET, result_key, io.BytesIO(output.getvalue()), output.tell(), content_type="image/jpeg"
    )
    return {"width": image.width, "height": image.height, "bytes": output.tell(), "finished_at": time.time()}
