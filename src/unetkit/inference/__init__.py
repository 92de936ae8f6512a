"""Prediction: tile plans (plan, no torch) -> the tile engine (engine) -> the drivers for arrays
(tiled), image files (files), streams to one output file (streaming) and dask (dask_arrays);
instances from probabilities (instances), labels across blocks (blockwise_labels); CPU runtimes
(runtime: eager torch or onnxruntime, chosen by measurement)."""

from .dask_arrays import predict_dask
from .engine import TileRunner, run_tiles
from .instances import probabilities_to_instances
from .plan import OUTPUT_KINDS, choose_tile_size, plan_tiles, region_tiles
from .runtime import RUNTIMES, with_runtime
from .streaming import predict_to_file
from .tiled import predict_tiled

__all__ = ["predict_dask", "TileRunner", "run_tiles", "probabilities_to_instances", "OUTPUT_KINDS",
           "choose_tile_size", "plan_tiles", "region_tiles", "predict_to_file", "predict_tiled",
           "RUNTIMES", "with_runtime"]
