"""Image operations: one module per operation, found through one registry keyed by its name.

Importing this package registers every processor. A processor gets an image in mode L, LA, RGB or
RGBA (the pipeline normalises decoded images to these), returns one in those modes, and leaves its
input unmodified.
"""

# Imported for their @processor registrations.
from worker.processors import adjust, filter, geometry, resize, watermark  # noqa: F401
from worker.processors.registry import PROCESSORS, NotApplicable, apply, apply_to_frames, output_size

__all__ = ["PROCESSORS", "NotApplicable", "apply", "apply_to_frames", "output_size"]
