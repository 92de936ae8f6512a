"""unetkit: the original U-Net (Ronneberger, Fischer, Brox 2015), faithfully.

- the network: :class:`UNet` (the paper's defaults), :mod:`unetkit.model.geometry` (legal tiles);
- prediction: :func:`predict_tiled` (exact overlap-tile inference, bounded memory; ``runtime=``
  torch, onnxruntime or auto, see :func:`with_runtime`);
- model files: :func:`save_model`, :func:`load_model` (safetensors + JSON header; also opens a
  bioimage.io zip that unetkit wrote); export: :mod:`unetkit.export` (bioimage.io, ONNX,
  TorchScript); napari plugin: :mod:`unetkit.napari`;
- training: :func:`train`, :func:`preset` / :class:`Config`; targets: :func:`weight_map`
  (paper Eq. 2), :func:`build_targets`;
- metrics: :func:`evaluate_arrays` (ISBI 2012, instance, semantic), :func:`isbi_metrics`;
- instances: :func:`probabilities_to_instances`;
- images larger than memory: :func:`predict_to_file` (streaming, resumable), :func:`predict_dask`
  (dask arrays, clusters), :func:`open_image` (lazy TIFF/Zarr/OME-Zarr); ``pip install
  'unetkit[dask]'``.
"""

from ._version import __version__  # noqa: F401  (unetkit.__version__; not in __all__, as before)

from .config import Config, UNetConfig, apply_overrides, load_config, preset, save_config
from .model.geometry import legal_input_sizes, margin, nearest_legal_sizes, output_size
from .inference.dask_arrays import predict_dask
from .inference.instances import probabilities_to_instances
from .io.lazy import open_image
from .training.loss import weighted_cross_entropy
from .metrics.arrays import evaluate_arrays, isbi_metrics
from .model.unet import UNet
from .model.modelfile import load_model, save_model
from .data.normalize import Normalization
from .inference.streaming import predict_to_file
from .data.targets import build_targets, instances_to_target, weight_map
from .inference.plan import choose_tile_size
from .inference.runtime import with_runtime
from .inference.tiled import predict_tiled
from .training import TrainingInterrupted, train

__all__ = [
    "Config",
    "Normalization",
    "TrainingInterrupted",
    "UNet",
    "UNetConfig",
    "apply_overrides",
    "build_targets",
    "choose_tile_size",
    "evaluate_arrays",
    "instances_to_target",
    "isbi_metrics",
    "legal_input_sizes",
    "load_config",
    "load_model",
    "margin",
    "nearest_legal_sizes",
    "open_image",
    "output_size",
    "predict_dask",
    "predict_tiled",
    "predict_to_file",
    "preset",
    "probabilities_to_instances",
    "save_config",
    "save_model",
    "train",
    "weight_map",
    "weighted_cross_entropy",
    "with_runtime",
]
