"""Models: load by bundled name or folder, save with a manifest, fingerprint."""

from infopt.models._architectures import pruned_bert_config
from infopt.models._bundled import BUNDLED_MODELS, bundled_path, cache_dir, package_file
from infopt.models._load import auto_class, infer_task, load_model
from infopt.models._loaded import LoadedModel, mean_pool
from infopt.models._manifest import MANIFEST_FILE, Manifest, Task, fingerprint_folder, weight_files, weights_mb
from infopt.models._onnx import OnnxModel
from infopt.models._save import save_model, write_model

__all__ = [
    "BUNDLED_MODELS",
    "MANIFEST_FILE",
    "LoadedModel",
    "Manifest",
    "OnnxModel",
    "Task",
    "auto_class",
    "bundled_path",
    "cache_dir",
    "fingerprint_folder",
    "infer_task",
    "load_model",
    "mean_pool",
    "package_file",
    "pruned_bert_config",
    "save_model",
    "weight_files",
    "weights_mb",
    "write_model",
]
