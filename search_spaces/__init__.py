"""The search spaces of sharenas and what they are made of.

- `policy.py`: `SharingPolicy`, the JSON schema of one point of every space;
- `presets.py`: the paper's named policies; `sizes.py`: the model sizes;
- `gate_space.py`: the Gumbel supernet's gate space (gates <-> policies, exact parameter costs);
- `layout_space.py`: the Optuna search's layout space (trial parameters <-> policies);
- `model/`: the `SharedCLIP` model family that realises a policy, and exported models;
- `arch.py`: `ArchRecord`, what an `arch.json` (a searched or exported architecture) holds.

Nothing here imports `trainer/` or `nas/`: `load_exported` rebuilds a searched model with this
package and its dependencies (torch, safetensors) alone.
"""
from .arch import ARCH_FILE, ArchError, ArchRecord, ParamCount
from .gate_space import GateSpace, GateSpaceConfig, ParamCostModel
from .layout_space import LayoutSpace, LayoutSpaceConfig
from .model import (
    ExportError, SharedCLIP, build_model, count_model_params, count_params, from_open_clip, load_exported,
    param_modality, save_exported,
)
from .policy import (
    ARCH_SCHEMA, POLICY_FILE, POLICY_SCHEMA, SUBLAYERS, LayerSharing, ParallelBranchSpec, PolicyError, SharingPolicy, recorded_size,
)
from .presets import PRESET_NAMES, get_preset, resolve_policy, share_last
from .sizes import SIZES, ModelSize, get_size

__all__ = [
    "ARCH_FILE", "ARCH_SCHEMA", "ArchError", "ArchRecord", "ExportError", "GateSpace", "GateSpaceConfig", "LayerSharing", "LayoutSpace", "LayoutSpaceConfig",
    "ModelSize", "POLICY_FILE", "PRESET_NAMES", "ParallelBranchSpec", "ParamCostModel", "ParamCount", "POLICY_SCHEMA", "PolicyError", "SIZES",
    "SUBLAYERS", "SharedCLIP", "SharingPolicy", "build_model", "count_model_params", "count_params", "from_open_clip", "get_preset",
    "get_size", "load_exported", "param_modality", "recorded_size", "resolve_policy", "save_exported", "share_last",
]
