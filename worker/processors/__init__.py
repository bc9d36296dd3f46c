"""Image operations: one module per operation, found through one registry keyed by its name.

Importing this package registers every processor. A processor gets an image in mode L, LA, RGB or
RGBA (the pipeline normalises decoded images to these), returns one in those modes, and leaves its
input unmodified.
"""

# Imported for their @processor registrations.
from worker.processors import filter, resize, watermark  # noqa: F401
from worker.processors.registry import PROCESSORS, apply, apply_to_frames

__all__ = ["PROCESSORS", "apply", "apply_to_frames"]
