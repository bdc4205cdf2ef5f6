"""Serve infopt models over HTTP with dynamic batching: classify, OpenAI-compatible embeddings, completions and
chat completions (causal LMs, one sequence at a time), metrics; and load-test a local server.

    from infopt.serve import ModelSpec, ServeConfig, run_server
    run_server(ServeConfig(models=(ModelSpec("clf", "minilm-l6-rt"),)))
    result = run_loadtest(LoadtestConfig("http://127.0.0.1:8000", model="clf", concurrency=8, requests=200))
"""

from infopt.serve._app import create_app
from infopt.serve._batcher import Batcher, BatchObserver, group_by_length
from infopt.serve._caching import CACHE_HEADER, TAGS_HEADER, TENANT_HEADER, ResponseCache, SemanticTier, tenant_of
from infopt.serve._cli_config import model_spec, serve_config, toml_reference
from infopt.serve._config import BatchingConfig, ModelSpec, ServeCacheConfig, ServeConfig, load_serve_config
from infopt.serve._errors import BodyTooLarge, QueueFull, QueueTimeout, RequestError, Unavailable, WrongTask
from infopt.serve._generate import Sampling, run_generation
from infopt.serve._launch import launch
from infopt.serve._lm_worker import GenerationWorker, Job
from infopt.serve._loadreport import BatchHistogram, LoadtestResult, Sample, print_loadtest
from infopt.serve._loadtest import ENDPOINTS as LOADTEST_ENDPOINTS
from infopt.serve._loadtest import LoadtestConfig, loadtest_async, run_loadtest
from infopt.serve._ray import REPLICA_HEADER, run_on_ray
from infopt.serve._ray_config import RayConfig
from infopt.serve._server import run_server
from infopt.serve._state import ServerState

__all__ = [
    "CACHE_HEADER",
    "LOADTEST_ENDPOINTS",
    "REPLICA_HEADER",
    "TAGS_HEADER",
    "TENANT_HEADER",
    "BatchHistogram",
    "BatchObserver",
    "Batcher",
    "BatchingConfig",
    "BodyTooLarge",
    "GenerationWorker",
    "Job",
    "LoadtestConfig",
    "LoadtestResult",
    "ModelSpec",
    "QueueFull",
    "QueueTimeout",
    "RayConfig",
    "RequestError",
    "ResponseCache",
    "Sample",
    "Sampling",
    "SemanticTier",
    "ServeCacheConfig",
    "ServeConfig",
    "ServerState",
    "Unavailable",
    "WrongTask",
    "create_app",
    "group_by_length",
    "launch",
    "load_serve_config",
    "loadtest_async",
    "model_spec",
    "print_loadtest",
    "run_generation",
    "run_loadtest",
    "run_on_ray",
    "run_server",
    "serve_config",
    "tenant_of",
    "toml_reference",
]
