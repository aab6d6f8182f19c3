"""Post-training: datasets, verifiers, sandbox and TRL trainers for the Instruct, Think and RL-Zero lines."""
