"""unetkit: the original U-Net (Ronneberger, Fischer, Brox 2015), faithfully.

The network (:class:`UNet`), exact overlap-tile prediction (:func:`predict_tiled`), model files
(:func:`save_model`, :func:`load_model`) and the tile geometry (:mod:`unetkit.geometry`).
"""

__version__ = "0.1.0"

from .geometry import legal_input_sizes, margin, nearest_legal_sizes, output_size
from .model import UNet, UNetConfig
from .modelfile import load_model, save_model
from .normalize import Normalization
from .tiling import choose_tile_size, predict_tiled

__all__ = [
    "UNet",
    "UNetConfig",
    "Normalization",
    "predict_tiled",
    "choose_tile_size",
    "save_model",
    "load_model",
    "output_size",
    "margin",
    "legal_input_sizes",
    "nearest_legal_sizes",
]
