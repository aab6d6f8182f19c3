"""Post-training: Dolci-format datasets and the TRL jobs of the Instruct, Think and RL-Zero lines."""
