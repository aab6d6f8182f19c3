"""Device check: train the `gpu_smoke` model with the real training job, export it, compare transformers'
log-probs with vLLM's, serve it and send one chat request. Prints one `RESULT {...}` JSON line at the end.

Runs on a bare single-GPU box (no Prefect, MLflow, Hydra): it imports only what the training job needs
and reads the presets' YAML directly. `--cpu --steps 5 --model micro` runs every phase on CPU (the test
in tests/benchmarks does). See benchmarks/gpu_check.sh for the wheels a machine without them needs.

Phases:
1. peak: a large matmul in the training dtype, timed (the MFU denominator actually reachable here).
2. data: a BPE tokenizer and a packed token shard from the Python stdlib sources (no download).
3. train: `python -m olmo3_core.train.loop job.json` through `olmo3_core.launch.run_job`, as the flow runs
   it; tokens/s from the job's own per-interval log lines after the first interval (compile/warmup), MFU =
   tokens/s x training FLOPs per token / peak.
4. export: the job's HF model dir made into an export (legacy RoPE fields, chat template, stop ids).
5. logprobs: teacher-forced log-probs of a few prompts by transformers; by vLLM too when it is installed
   and CUDA is present (max absolute difference printed), else "vllm absent".
6. serve: `python -m olmo3_core.serve` on loopback, one chat completion over HTTP, then SIGTERM.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from olmo3_core.chat import EOS_TOKEN, PAD_TOKEN, SPECIAL_TOKENS  # noqa: E402
from olmo3_core.config.schema import LaunchConfig, ModelConfig, TrainConfig  # noqa: E402
from olmo3_core.data.tokenizer import local_size  # noqa: E402
from olmo3_core.model.build import count_parameters, vocab_mismatch  # noqa: E402

PROMPTS = ["def fibonacci(n):\n    if n < 2:\n        return n\n", "The quick brown fox jumps over the lazy dog.",
           "import os\nimport sys\n\n\ndef main():\n"]


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- 1. peak ---------------------------------------------------------------------------------------

def measure_peak_flops(device: str, dtype: torch.dtype, size: int, repeats: int) -> float:
    """FLOP/s of a square matmul: the best this device does in this dtype (the MFU denominator)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# --- 2. data ---------------------------------------------------------------------------------------

def prepare_data(root: Path, vocab_size: int, tokens: int) -> tuple[Path, Path]:
    """Tokenizer (trained BPE with the flow's special tokens) and a mix dir with one uint32 shard."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    files = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
    texts, chars = [], 0
    for path in files:  # ~4 chars per token: enough text for the token target, in a stable order
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
        chars += len(texts[-1])
        if chars > tokens * 4:
            break
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tok.train_from_iterator(texts[:200], trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN)
    tokenizer_dir, mix_dir = root / "tokenizer", root / "mix"
    fast.save_pretrained(tokenizer_dir)
    mix_dir.mkdir(parents=True, exist_ok=True)
    ids: list[int] = []
    for encoding in fast(texts)["input_ids"]:
        ids += encoding + [fast.eos_token_id]
    np.save(mix_dir / "shard_00000.npy", np.array(ids, dtype=np.uint32))
    return tokenizer_dir, mix_dir


# --- 3. train --------------------------------------------------------------------------------------

def load_presets(model_name: str, vocab_size: int) -> tuple[ModelConfig, TrainConfig]:
    """conf/model/<name>.yaml and conf/train/gpu_smoke.yaml's pretrain section, without Hydra: the model's
    `${data.tokenizer.vocab_size}` is the tokenizer built here."""
    model = yaml.safe_load((REPO / "conf" / "model" / f"{model_name}.yaml").read_text())
    if model.get("vocab_size") == "${data.tokenizer.vocab_size}":
        model["vocab_size"] = vocab_size
    train = yaml.safe_load((REPO / "conf" / "train" / "gpu_smoke.yaml").read_text())["pretrain"]
    return ModelConfig(**model), TrainConfig(**train)


def flops_per_token(model: ModelConfig, parameters: int, seq_len: int) -> float:
    """Training FLOPs per token: 6 x (parameters less the input embedding, a lookup) for the matmuls
    forward and backward, plus attention scores and values, 6 x layers x hidden x the average causal
    context (half the window attended: min(seq, window) / 2 on sliding layers, seq / 2 on full ones)."""
    matmul_params = parameters - model.vocab_size * model.hidden_size
    full = model.num_layers // model.full_attention_every
    sliding = model.num_layers - full
    context = full * seq_len / 2 + sliding * min(seq_len, model.sliding_window) / 2
    return 6 * matmul_params + 12 * model.hidden_size * context


def train(args, work: Path, tokenizer_dir: Path, mix_dir: Path, model: ModelConfig, train_cfg: TrainConfig) -> dict:
    from olmo3_core.launch import run_job
    from olmo3_core.stages.jobs import JobOutputs, TrainJob
    from olmo3_core.train import loop

    out = work / "pretrain"
    if out.exists():
        shutil.rmtree(out)  # a fresh run each time: a leftover checkpoint would resume and skew tokens/s
    job = TrainJob(kind="pretrain", train=train_cfg, model=model, tokenizer_dir=str(tokenizer_dir), mix_dir=str(mix_dir),
                   output_dir=str(out), checkpoint_dir=str(out / "work" / "checkpoints"))
    intervals: list[float] = []

    def on_line(line: str) -> None:
        print(line, flush=True)
        if line.startswith('{"step"'):
            intervals.append(json.loads(line)["train/tokens_per_s"])

    started = time.time()
    run_job(loop, job, out / "work", LaunchConfig(nprocs=1, timeout_s=args.train_timeout), on_line)
    outputs = JobOutputs.read(out)
    steady = intervals[1:] or intervals  # the first interval carries compilation and allocator warmup
    return {"wall_s": round(time.time() - started, 1), "tokens_per_s": float(np.median(steady)),
            "first_loss": outputs.loss_history[0].loss, "final_loss": outputs.loss_history[-1].loss,
            "model_dir": str(out / "model")}


# --- 4. export -------------------------------------------------------------------------------------

def export(model_dir: Path, dest: Path) -> Path:
    from olmo3_core.export.hf import add_legacy_rope_fields, set_chat_defaults

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(model_dir, dest)
    add_legacy_rope_fields(dest / "config.json")
    set_chat_defaults(dest, "instruct")
    return dest


# --- 5. log-probs ----------------------------------------------------------------------------------

def transformers_logprobs(model_dir: Path, device: str, dtype: torch.dtype) -> list[list[float]]:
    """Per prompt, log p(token_i | tokens_<i) for i >= 1, teacher forced."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    result = []
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
            logp = torch.log_softmax(model(ids).logits.float(), dim=-1)[0, :-1]
            result.append(logp.gather(1, ids[0, 1:, None])[:, 0].tolist())
    return result


def vllm_logprobs(model_dir: Path, dtype: str) -> list[list[float]]:
    from vllm import LLM, SamplingParams

    llm = LLM(model=str(model_dir), dtype=dtype, gpu_memory_utilization=0.3, enforce_eager=True)
    tokenizer = llm.get_tokenizer()
    prompts = [{"prompt_token_ids": tokenizer(p, add_special_tokens=False)["input_ids"]} for p in PROMPTS]
    outs = llm.generate(prompts, SamplingParams(max_tokens=1, prompt_logprobs=0))
    result = []
    for prompt, out in zip(prompts, outs):
        ids = prompt["prompt_token_ids"]
        # prompt_logprobs[0] is None (no context); entry i maps token id -> Logprob for position i
        result.append([out.prompt_logprobs[i][ids[i]].logprob for i in range(1, len(ids))])
    return result


# --- 6. serve --------------------------------------------------------------------------------------

def serve_once(model_dir: Path, timeout_s: float) -> dict:
    import httpx

    from olmo3_core.launch import free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "olmo3_core.serve", str(model_dir), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base, deadline = f"http://127.0.0.1:{port}", time.time() + timeout_s
    try:
        while True:
            try:
                models = httpx.get(f"{base}/v1/models", timeout=2)
                if models.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"server did not come up (exit {proc.poll()})")
            time.sleep(0.5)
        name = models.json()["data"][0]["id"]
        started = time.time()
        reply = httpx.post(f"{base}/v1/chat/completions", timeout=120, json={
            "model": name, "messages": [{"role": "user", "content": "Write a Python function that adds two numbers."}],
            "max_tokens": 32, "temperature": 0}).raise_for_status().json()
        return {"latency_s": round(time.time() - started, 2), "finish_reason": reply["choices"][0]["finish_reason"],
                "completion_tokens": reply["usage"]["completion_tokens"], "text": reply["choices"][0]["message"]["content"]}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        tail = proc.stdout.read()[-3000:] if proc.stdout else ""
        print(tail, flush=True)


# --- main ------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="run every phase on CPU, fp32, at test size")
    parser.add_argument("--steps", type=int, default=300, help="training steps")
    parser.add_argument("--model", default="gpu_smoke", help="a conf/model preset (gpu_smoke; micro for tests)")
    parser.add_argument("--seq-len", type=int, help="default: the gpu_smoke preset's (CPU: 64)")
    parser.add_argument("--micro-batch", type=int, help="default: the gpu_smoke preset's (CPU: 2)")
    parser.add_argument("--vocab", type=int, default=4096, help="BPE vocabulary trained for the check")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "olmo3_gpu_check")
    parser.add_argument("--train-timeout", type=int, default=360)
    parser.add_argument("--skip-serve", action="store_true")
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available() and not args.cpu
    if not cuda and not args.cpu:
        log("no CUDA device visible; pass --cpu for the CPU path")
        return 2
    if args.cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the job, the server and DeepSpeed's accelerator all see CPU only
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    result: dict = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__}
    args.work.mkdir(parents=True, exist_ok=True)

    result["peak_tflops"] = round(measure_peak_flops(device, dtype, 8192 if cuda else 1024, 50 if cuda else 3) / 1e12, 2)
    log(f"peak {dtype} matmul: {result['peak_tflops']} TFLOP/s")

    # more tokens than the run reads are not needed: TokenWindows cycles over the shard
    tokenizer_dir, mix_dir = prepare_data(args.work / "data", args.vocab, tokens=2_000_000 if cuda else 50_000)
    vocab = local_size(str(tokenizer_dir))
    model, train_cfg = load_presets(args.model, vocab)
    problem = vocab_mismatch(model.vocab_size, vocab, str(tokenizer_dir))
    if problem:
        log(problem)
        return 2
    seq = args.seq_len or (train_cfg.seq_len if cuda else 64)
    mbs = args.micro_batch or (train_cfg.micro_batch_size if cuda else 2)
    train_cfg = dataclasses.replace(train_cfg, max_steps=args.steps, seq_len=seq, micro_batch_size=mbs,
                                    warmup_steps=min(train_cfg.warmup_steps, max(1, args.steps // 10)),
                                    checkpoint_every=10**9, log_every=max(1, min(10, args.steps // 5)),
                                    precision="bf16" if cuda else "fp32")
    params = count_parameters(model)
    result.update(parameters=params, seq_len=seq, micro_batch=mbs, steps=args.steps, precision=train_cfg.precision)
    log(f"training {args.model}: {params / 1e6:.1f}M parameters, {args.steps} steps of {mbs} x {seq} tokens, {train_cfg.precision}")
    trained = train(args, args.work, tokenizer_dir, mix_dir, model, train_cfg)
    result.update({k: v for k, v in trained.items() if k != "model_dir"})
    achieved = trained["tokens_per_s"] * flops_per_token(model, params, seq)
    result["model_tflops"] = round(achieved / 1e12, 2)
    result["mfu_vs_measured_peak"] = round(achieved / (result["peak_tflops"] * 1e12), 4)
    if cuda:  # the H200's dense bf16 peak as measured by NVIDIA-style matmul benchmarks
        result["mfu_vs_790_tflops"] = round(achieved / 790e12, 4)
    log(f"train: {trained['tokens_per_s']:,.0f} tokens/s, {result['model_tflops']} TFLOP/s, "
        f"MFU {result['mfu_vs_measured_peak']:.1%} of the measured peak; loss {trained['first_loss']:.3f} -> {trained['final_loss']:.3f}")

    exported = export(Path(trained["model_dir"]), args.work / "export" / "model")
    hf = transformers_logprobs(exported, device, torch.float32)
    result["transformers_mean_logprob"] = round(float(np.mean([x for row in hf for x in row])), 4)
    if cuda and importlib.util.find_spec("vllm") is not None:
        import vllm

        vl = vllm_logprobs(exported, "float32")
        diff = max(abs(a - b) for row_a, row_b in zip(hf, vl) for a, b in zip(row_a, row_b))
        result.update(vllm=vllm.__version__, vllm_max_abs_logprob_diff=round(diff, 5))
        log(f"vLLM {vllm.__version__} vs transformers (fp32): max |delta log-prob| = {diff:.2e}")
    else:
        result["vllm"] = "absent" if importlib.util.find_spec("vllm") is None else "no CUDA"
        log(f"vllm {result['vllm']}: log-prob comparison skipped (transformers mean log-prob {result['transformers_mean_logprob']})")

    if not args.skip_serve:
        result["serve"] = serve_once(exported, timeout_s=180)
        log(f"serve: one chat completion in {result['serve']['latency_s']} s, finish_reason {result['serve']['finish_reason']}")
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
