"""Reading and writing images: PNG/TIFF stacks (images), lazy TIFF/Zarr/OME-Zarr views (lazy), output sinks (sinks)."""
