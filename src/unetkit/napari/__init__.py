"""The unetkit napari plugin (npe2 manifest ``napari.yaml``): segment and train from napari.

``layers.py`` computes (no Qt, tested headless); ``widgets.py`` is the Qt side (magicgui widgets,
work in a worker thread).  Install with ``pip install 'unetkit[napari]'``.
"""
