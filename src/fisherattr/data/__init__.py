"""Image loading, shipped sample photos and data sets."""
from .images import DEFAULT_SAMPLES, RESIZE_RULES, image_name, list_samples, load_image
from .mosaics import build_mosaics
from .sources import load_data, parse_spec

__all__ = ["DEFAULT_SAMPLES", "RESIZE_RULES", "build_mosaics", "image_name", "list_samples", "load_data",
           "load_image", "parse_spec"]
