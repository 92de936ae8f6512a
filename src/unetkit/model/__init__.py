"""The network: integer geometry (legal sizes, margins, strides; no torch), the U-Net, model files."""

from .geometry import legal_input_sizes, margin, nearest_legal_sizes, output_size
from .modelfile import load_model, read_model_meta, save_model
from .unet import UNet

__all__ = ["legal_input_sizes", "margin", "nearest_legal_sizes", "output_size", "load_model",
           "read_model_meta", "save_model", "UNet"]
