"""Image-caption data: the embedded default (generated shapes + scikit-learn digits, no download),
CSV files and webdataset tar shards, as map-style datasets plus evaluation sets."""
from .build import build_data
from .bundle import DataBundle
from .collate import collate_pairs
from .config import DataConfig
from .errors import DataError
from .failures import DecodeFailures
from .pairs import ConcatPairs, PairDataset, SubsetPairs
from .shapes import HELDOUT_COMBOS, SHAPE_CLASSES, fresh_shapes
from .shards import expand_braces
from .tasks import LinearProbeTask, PairSet, ZeroShotTask
from .text import tokenize
from .transforms import OPENAI_MEAN, OPENAI_STD, denormalize, to_model_tensor

__all__ = [
    "build_data",
    "collate_pairs",
    "ConcatPairs",
    "DataBundle",
    "DataConfig",
    "DataError",
    "DecodeFailures",
    "denormalize",
    "expand_braces",
    "fresh_shapes",
    "HELDOUT_COMBOS",
    "LinearProbeTask",
    "OPENAI_MEAN",
    "OPENAI_STD",
    "PairDataset",
    "PairSet",
    "SHAPE_CLASSES",
    "SubsetPairs",
    "to_model_tensor",
    "tokenize",
    "ZeroShotTask",
]
