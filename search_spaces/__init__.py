"""Sharing policies and the `SharedCLIP` model family that realises them."""
from .exported import ExportError, load_exported, save_exported
from .factory import ParamCount, build_model, count_model_params, count_params
from .model import SharedCLIP, param_modality
from .open_clip_import import from_open_clip
from .policy import ARCH_SCHEMA, SCHEMA, SUBLAYERS, LayerSharing, ParallelBranchSpec, PolicyError, SharingPolicy, recorded_size
from .presets import PRESET_NAMES, get_preset, resolve_policy, share_last
from .sizes import SIZES, ModelSize, get_size

__all__ = [
    "ARCH_SCHEMA", "ExportError", "SCHEMA", "SUBLAYERS", "SIZES", "PRESET_NAMES", "LayerSharing", "ModelSize", "ParallelBranchSpec", "ParamCount",
    "PolicyError", "SharedCLIP", "SharingPolicy", "build_model", "count_model_params", "count_params", "from_open_clip",
    "get_preset", "get_size", "load_exported", "param_modality", "recorded_size", "resolve_policy", "save_exported", "share_last",
]
