"""Prediction: tile plans, the tile engine, and the drivers for arrays, files, streams and dask."""
