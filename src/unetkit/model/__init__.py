"""The network: integer geometry (legal sizes, margins; no torch), the U-Net, model files."""
