"""Reading and writing images: PNG/TIFF files and stacks (images), lazy TIFF/Zarr/OME-Zarr views
(lazy), output sinks for streamed predictions (sinks)."""

from .images import (ImageReadError, atomic_path, image_files, iter_images, read_image, read_stack,
                     write_tiff)
from .lazy import LazyImage, open_image
from .sinks import Sink, output_format

__all__ = ["ImageReadError", "atomic_path", "image_files", "iter_images", "read_image", "read_stack",
           "write_tiff", "LazyImage", "open_image", "Sink", "output_format"]
