"""The core library: no Textual, no printing, usable from notebooks."""
