"""Outside services: the Hugging Face Hub (models pull), the X API (seed hydration)."""
