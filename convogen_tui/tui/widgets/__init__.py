"""Reusable widgets: the streaming conversation view."""
