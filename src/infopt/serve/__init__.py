"""Serve infopt models over HTTP with dynamic batching: classify, OpenAI-compatible embeddings, metrics.

    from infopt.serve import ModelSpec, ServeConfig, run_server
    run_server(ServeConfig(models=(ModelSpec("clf", "minilm-l6-rt"),)))
"""

from infopt.serve._app import create_app
from infopt.serve._batcher import Batcher, BatchObserver, group_by_length
from infopt.serve._config import BatchingConfig, ModelSpec, ServeConfig, load_serve_config
from infopt.serve._errors import BodyTooLarge, QueueFull, QueueTimeout, RequestError, Unavailable, WrongTask
from infopt.serve._server import run_server
from infopt.serve._state import ServerState

__all__ = [
    "BatchObserver",
    "Batcher",
    "BatchingConfig",
    "BodyTooLarge",
    "ModelSpec",
    "QueueFull",
    "QueueTimeout",
    "RequestError",
    "ServeConfig",
    "ServerState",
    "Unavailable",
    "WrongTask",
    "create_app",
    "group_by_length",
    "load_serve_config",
    "run_server",
]
