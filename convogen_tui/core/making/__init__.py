"""Making conversations: the experiment, templates, prompts, seeds, personas, backends and the pipeline."""
