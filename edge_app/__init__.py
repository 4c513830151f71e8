"""engage-edge: on-device engagement detection from facial expressions."""

__version__ = "0.1.0"
