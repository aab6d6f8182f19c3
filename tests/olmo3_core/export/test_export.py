"""The export stage on a small random model: a directory a user can load, chat with, and trace."""
import json

from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from olmo3_core.chat import EOS_TOKEN, IM_END, template_digest
from olmo3_core.config.schema import ExportStageConfig, TrainStageConfig
from olmo3_core.export.stage import run
from olmo3_core.stages import InputArtifact, StageContext
from tests.tiny_model import save_tiny_model


def _model_artifact(root, yarn_factor: float = 0.0, original_context: int | None = None):
    model_cfg = save_tiny_model(root / "model", ["What is 2 + 3? The answer is 5."], yarn_factor=yarn_factor,
                                original_context=original_context)
    manifest = {"stage": "instruct/sft", "kind": "sft", "fingerprint": "a" * 64, "uri": str(root), "upstream": [],
                "mlflow": {"run_id": "run-1"}, "raw_inputs": []}
    return InputArtifact("instruct/sft", "sft", "a" * 64, str(root), root, TrainStageConfig(model=model_cfg), manifest)


def test_export_is_loadable_with_its_chat_template_and_lineage(tmp_path):
    upstream = _model_artifact(tmp_path / "sft")
    out = tmp_path / "export"
    out.mkdir()
    config = ExportStageConfig(line="instruct", template="instruct", registered_model="olmo3-instruct")
    result = run(StageContext("instruct/export", "export", config, {"sft": upstream}, out, uri="file:///export",
                              fingerprint="b" * 64))
    model_dir = out / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert GenerationConfig.from_pretrained(model_dir).eos_token_id == tokenizer.convert_tokens_to_ids([IM_END, EOS_TOKEN])
    assert AutoModelForCausalLM.from_pretrained(model_dir).num_parameters() == result.metrics["parameters"]
    lineage = json.loads((model_dir / "lineage.json").read_text())
    assert lineage["artifact_uri"] == "file:///export" and [r["stage"] for r in lineage["chain"]] == ["instruct/sft"]
    card = (model_dir / "README.md").read_text()
    assert template_digest("instruct") in card and "run-1" in card and "olmo3-instruct" in card
    assert set(result.varies) == {"model/README.md", "model/lineage.json"}  # declared, since they name this run
