"""Flow configuration: Hydra composition plus a typed schema checked before any compute."""
from olmo3_core.config.compose import ConfigError, compose_config, conf_dir

__all__ = ["ConfigError", "compose_config", "conf_dir"]
