"""Flow configuration: Hydra composition (`compose`), the typed schema (`schema`), one validation idiom (`typed`)."""
