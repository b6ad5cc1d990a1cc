"""Generation backends and model files."""
