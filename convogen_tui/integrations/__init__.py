"""Talking to the outside world (model hubs, the X API); no Textual, no printing."""
