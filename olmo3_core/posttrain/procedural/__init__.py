"""Built-in procedural tasks, generated offline with a seed, so post-training runs without downloads."""
