"""Models: load by bundled name or folder, save with a manifest, fingerprint; the registry of folder formats."""

from infopt.models._architectures import pruned_bert_config
from infopt.models._bundled import BUNDLED_MODELS, BundledModel, build_once, bundled_path, cache_dir, package_file
from infopt.models._fingerprint import fingerprint_model
from infopt.models._formats import ModelFormat, get_format, register_format
from infopt.models._load import load_model
from infopt.models._loaded import LoadedModel, mean_pool
from infopt.models._manifest import MANIFEST_FILE, Manifest, Task, fingerprint_folder, weight_files, weights_mb
from infopt.models._modules import BLOCK_PATHS, base_of, block_path, eval_mode, forward_hooks, set_submodule
from infopt.models._onnx import OnnxModel
from infopt.models._pooling import masked_mean
from infopt.models._save import save_model, write_model
from infopt.models._tasks import auto_class, infer_task, new_classifier

__all__ = [
    "BLOCK_PATHS",
    "BUNDLED_MODELS",
    "MANIFEST_FILE",
    "BundledModel",
    "LoadedModel",
    "Manifest",
    "ModelFormat",
    "OnnxModel",
    "Task",
    "auto_class",
    "base_of",
    "block_path",
    "build_once",
    "bundled_path",
    "cache_dir",
    "eval_mode",
    "fingerprint_folder",
    "fingerprint_model",
    "forward_hooks",
    "get_format",
    "infer_task",
    "load_model",
    "masked_mean",
    "mean_pool",
    "new_classifier",
    "package_file",
    "pruned_bert_config",
    "register_format",
    "save_model",
    "set_submodule",
    "weight_files",
    "weights_mb",
    "write_model",
]
