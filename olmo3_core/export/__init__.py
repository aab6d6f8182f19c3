"""The export stage: a self-describing Hugging Face model directory (see `stage.py`)."""
