"""ConvoGen TUI: synthetic SocBot/User conversations from seed messages, on a local llama.cpp model."""

__version__ = "0.1.0"
