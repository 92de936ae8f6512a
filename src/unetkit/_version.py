"""The package version (its own file, so that no module imports the package top for it)."""

__version__ = "0.1.0"
