"""Services outside this machine: the Hugging Face hub (models) and the X API (seed hydration)."""
