"""The Textual app: a thin shell over convogen_tui.core."""
