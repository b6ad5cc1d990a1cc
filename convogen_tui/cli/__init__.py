"""The headless CLI: thin commands over the core, one module per command group."""
