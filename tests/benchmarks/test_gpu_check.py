"""benchmarks/gpu_check.py's CPU mode: every phase the GPU check runs (peak matmul, data, the real training
job, export, log-probs, serve + one request) at test size, in a subprocess as the shell script runs it."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from olmo3_core.config.schema import ModelConfig

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))


def test_flops_per_token_counts_matmuls_and_causal_attention():
    from gpu_check import flops_per_token

    model = ModelConfig(hidden_size=64, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=192, vocab_size=100,
                        max_position_embeddings=512, sliding_window=32, full_attention_every=4)
    # 6 x (10,000 params - 6,400 embedding) + 12 x 64 x (1 full layer x 128/2 + 3 sliding x 32/2)
    assert flops_per_token(model, 10_000, 128) == 6 * 3_600 + 12 * 64 * (64 + 3 * 16)


# What a bare GPU box lacks: the script, the training job and the server must not need any of it.
ABSENT = ("prefect", "mlflow", "hydra", "vllm", "s3fs", "dask", "datasets", "trl", "accelerate", "openai")


@pytest.mark.slow
def test_cpu_mode_runs_every_phase_and_reports(tmp_path):
    blocker = tmp_path / "absent"  # a sitecustomize that makes those packages unimportable in every process
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(f"import sys\nfor name in {ABSENT!r}:\n    sys.modules[name] = None\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--cpu", "--steps", "5",
                           "--model", "micro", "--work", str(tmp_path / "work")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[len("RESULT "):])
    assert result["device"] == "cpu" and result["steps"] == 5 and result["precision"] == "fp32"
    assert result["tokens_per_s"] > 0 and result["peak_tflops"] > 0 and 0 < result["mfu_vs_measured_peak"] < 1
    assert result["final_loss"] < result["first_loss"]  # the job trained
    assert result["vllm"] == "absent" and result["transformers_mean_logprob"] < 0
    assert result["serve"]["finish_reason"] in ("stop", "length") and result["serve"]["completion_tokens"] > 0
    config = json.loads((tmp_path / "work" / "export" / "model" / "config.json").read_text())
    assert config["rope_theta"] == 500000.0  # exported with the legacy RoPE fields
