"""The `SharedCLIP` model family that realises a sharing policy: the model (`shared_clip.py`), its
transformer stack (`transformer.py`, sublayers in `layers.py`), the conv extras (`conv.py`), building
and counting (`factory.py`), the open_clip import (`open_clip_import.py`) and exported models
(`exported.py`, loadable without the search code)."""
from .exported import ExportError, load_exported, save_exported
from .factory import build_model, count_model_params, count_params
from .open_clip_import import from_open_clip
from .shared_clip import SharedCLIP, param_modality

__all__ = [
    "ExportError", "SharedCLIP", "build_model", "count_model_params", "count_params", "from_open_clip",
    "load_exported", "param_modality", "save_exported",
]
