"""Stage contract: what every stage function receives and returns (see `context.py`)."""
from olmo3_core.stages.context import InputArtifact, StageContext, StageResult

__all__ = ["InputArtifact", "StageContext", "StageResult"]
