"""Serve an exported model behind an OpenAI-compatible chat endpoint (`olmo3-flow serve`).

On a GPU machine with vLLM installed this execs vLLM's own OpenAI server on the export directory: it
reads the tokenizer's chat template and the generation config (which stops at end of turn) from the
directory like any HF model. Elsewhere a small transformers-backed server answers the same
`/v1/chat/completions` and `/v1/models` routes: FastAPI + uvicorn for HTTP, pydantic models for the
request and response bodies (the subset of OpenAI's schema this server honours; anything else in a
request is refused by validation rather than silently ignored).
"""
from __future__ import annotations

import copy
import importlib.util
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

BACKENDS = ("auto", "vllm", "transformers")


class ServeError(RuntimeError):
    """A target that cannot be served, or a backend that cannot run here; the message says which."""


# --- what to serve ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServedModel:
    path: Path  # an HF model directory (config.json, weights, tokenizer with chat template)
    name: str  # the `model` clients send and `/v1/models` lists


def resolve_target(target: str, tracking_uri: str | None = None, cache_dir: Path | None = None) -> ServedModel:
    """An export directory, or a registered model `name[@version]` (latest version without `@`).

    A registered version is served from the export artifact it was registered from (its `artifact_uri`
    tag) when that is a local directory, else from a download of the registered model's files."""
    path = Path(target).expanduser()
    if path.exists():
        model_dir = path / "model" if (path / "model" / "config.json").is_file() else path
        if not (model_dir / "config.json").is_file():
            raise ServeError(f"{target} is not a model directory: no config.json in it (an export's `model/` folder is)")
        return ServedModel(model_dir.resolve(), model_dir.resolve().parent.name if model_dir.name == "model" else model_dir.name)
    name, _, version = target.partition("@")
    if "/" in name or not name:
        raise ServeError(f"{target!r} is neither an existing directory nor a registered model name[@version]")
    return _registered(name, version or None, tracking_uri, cache_dir)


def _registered(name: str, version: str | None, tracking_uri: str | None, cache_dir: Path | None) -> ServedModel:
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from olmo3_core.home import default_tracking_uri, project_home

    uri = tracking_uri or default_tracking_uri()
    client = MlflowClient(tracking_uri=uri)
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException as exc:
        raise ServeError(f"registered model {name!r}: {exc}") from exc
    if not versions:
        raise ServeError(f"no registered model named {name!r} in {uri}")
    if version is None:
        chosen = max(versions, key=lambda v: int(v.version))
    else:
        chosen = next((v for v in versions if str(v.version) == version), None)  # MLflow's type varies (int/str)
        if chosen is None:
            raise ServeError(f"registered model {name!r} has no version {version}; it has "
                             f"{sorted(int(v.version) for v in versions)}")
    served_name = f"{name}@{chosen.version}"
    artifact = (chosen.tags or {}).get("artifact_uri", "").removeprefix("file://")
    if artifact and "://" not in artifact and (Path(artifact) / "model" / "config.json").is_file():
        return ServedModel(Path(artifact) / "model", served_name)
    dest = (cache_dir or project_home() / "cache" / "serve") / name / str(chosen.version)
    if not (dest / "config.json").is_file():
        dest.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(uri)  # `models:/` URIs resolve through the process-wide tracking URI
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{chosen.version}", dst_path=str(dest))
    return ServedModel(dest, served_name)


# --- which server ----------------------------------------------------------------------------------

def choose_backend(requested: str, vllm_importable: bool, cuda_available: bool) -> str:
    """vLLM where it can run (installed and a GPU present), transformers otherwise; asking for vLLM where
    it cannot run is an error, not a silent fallback."""
    if requested not in BACKENDS:
        raise ServeError(f"--backend must be one of {BACKENDS}, got {requested!r}")
    if requested == "transformers":
        return "transformers"
    if vllm_importable and cuda_available:
        return "vllm"
    if requested == "vllm":
        missing = "vllm is not installed (pip install -e '.[gpu]')" if not vllm_importable else "no CUDA device is visible"
        raise ServeError(f"--backend vllm cannot run here: {missing}")
    return "transformers"


def vllm_command(model: ServedModel, host: str, port: int) -> list[str]:
    """vLLM's OpenAI server on the export. It applies the tokenizer's own chat template and, through
    `--generation-config auto`, the export's generation_config.json (end-of-turn and EOS as stop ids)."""
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model.path),
            "--served-model-name", model.name, "--host", host, "--port", str(port), "--generation-config", "auto"]


def serve(target: str, host: str = "127.0.0.1", port: int = 8000, backend: str = "auto",
          tracking_uri: str | None = None) -> int:
    model = resolve_target(target, tracking_uri)
    import torch

    chosen = choose_backend(backend, importlib.util.find_spec("vllm") is not None, torch.cuda.is_available())
    print(f"serving {model.name} from {model.path} with {chosen} on http://{host}:{port}/v1", flush=True)
    if chosen == "vllm":
        cmd = vllm_command(model, host, port)
        os.execv(cmd[0], cmd)  # vLLM's server owns the process from here: signals go straight to it
    import uvicorn

    # uvicorn handles SIGINT/SIGTERM itself: it stops accepting, finishes in-flight requests, runs the app's
    # shutdown, then re-raises the signal so the parent sees why the server ended
    uvicorn.run(create_app(TransformersChat(model)), host=host, port=port, log_level="info")
    return 0


# --- the transformers-backed server ----------------------------------------------------------------

class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatCompletionRequest(BaseModel):
    """The part of OpenAI's chat completion request this server implements; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    model: str
    messages: List[ChatMessage] = Field(min_length=1)
    max_tokens: Optional[int] = Field(default=None, gt=0)
    max_completion_tokens: Optional[int] = Field(default=None, gt=0)  # OpenAI's newer name for max_tokens
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: Literal[1] = 1
    stream: Literal[False] = False
    seed: Optional[int] = None
    logit_bias: Optional[Dict[str, float]] = None  # token id (as a string, as OpenAI sends it) -> bias
    user: Optional[str] = None


class Choice(BaseModel):
    index: int
    message: ChatMessage
    finish_reason: Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: List[Choice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "olmo3-flow"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: List[ModelCard]


DEFAULT_MAX_TOKENS = 256


class TransformersChat:
    """One model, generation serialized by a lock (one forward pass at a time is all a CPU can give)."""

    def __init__(self, model: ServedModel):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        self.name, self.created = model.name, int(time.time())
        self.tokenizer = AutoTokenizer.from_pretrained(model.path)
        if not self.tokenizer.chat_template:
            raise ServeError(f"{model.path} has no chat template in its tokenizer: serve an export of a "
                             f"post-trained line (instruct, think, rl_zero), or the base export after its template is set")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(model.path, dtype=dtype).to(device).eval()
        self.generation = GenerationConfig.from_pretrained(model.path)
        eos = self.generation.eos_token_id
        self.stop_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if not self.stop_ids:
            raise ServeError(f"{model.path}/generation_config.json names no eos_token_id: replies would never end")
        self.lock = threading.Lock()

    def complete(self, request: ChatCompletionRequest) -> ChatCompletion:
        import torch

        prompt = self.tokenizer.apply_chat_template([m.model_dump() for m in request.messages], add_generation_prompt=True,
                                                    tokenize=False)
        ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        budget = request.max_completion_tokens or request.max_tokens or DEFAULT_MAX_TOKENS
        sample = request.temperature > 0
        # the export's generation config (stop ids, pad id) with this request's settings on top
        config = copy.deepcopy(self.generation)
        config.update(max_new_tokens=budget, do_sample=sample)
        if sample:
            config.update(temperature=request.temperature, top_p=request.top_p)
        else:  # greedy: sampling fields the export may carry would only draw warnings
            config.update(temperature=None, top_p=None, top_k=None)
        if request.logit_bias:
            config.update(sequence_bias={(int(token),): float(bias) for token, bias in request.logit_bias.items()})
        with self.lock, torch.no_grad():
            if request.seed is not None:
                torch.manual_seed(request.seed)
            out = self.model.generate(**ids, generation_config=config)
        generated = out[0, ids["input_ids"].shape[1]:].tolist()
        stopped = bool(generated) and generated[-1] in self.stop_ids
        text_ids = generated[:-1] if stopped else generated  # the end-of-turn token ends the reply, it is not text
        content = self.tokenizer.decode(text_ids, skip_special_tokens=True)
        prompt_tokens = int(ids["input_ids"].shape[1])
        return ChatCompletion(
            id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=self.name,
            choices=[Choice(index=0, message=ChatMessage(role="assistant", content=content),
                            finish_reason="stop" if stopped else "length")],
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=len(generated),
                        total_tokens=prompt_tokens + len(generated)))


def create_app(chat: TransformersChat):
    from fastapi import FastAPI, HTTPException

    app = FastAPI(title="olmo3-flow serve", version="1")

    @app.get("/health")
    def health() -> Dict[str, str]:
        return {"status": "ok", "model": chat.name}

    @app.get("/v1/models", response_model=ModelList)
    def models() -> ModelList:
        return ModelList(data=[ModelCard(id=chat.name, created=chat.created)])

    @app.post("/v1/chat/completions", response_model=ChatCompletion)
    def chat_completions(request: ChatCompletionRequest) -> ChatCompletion:
        if request.model != chat.name:
            raise HTTPException(status_code=404, detail=f"model {request.model!r} is not served here; this server serves {chat.name!r}")
        return chat.complete(request)

    return app



def main(argv: list[str] | None = None) -> int:
    """`python -m olmo3_core.serve`: the same as `olmo3-flow serve`, for machines where only the library is
    on the path (benchmarks/gpu_check.py uses it)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m olmo3_core.serve", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return serve(args.target, args.host, args.port, args.backend, args.tracking_uri)
    except ServeError as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2


def add_arguments(parser) -> None:
    parser.add_argument("target", help="an export directory, or a registered model name[@version] (latest without @)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto: vLLM when installed and a GPU is visible, else transformers")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI for registered names (default: the project home's)")


if __name__ == "__main__":
    sys.exit(main())
