"""Keeping files: conversation records, the store with its trash and index, atomic writes, locks."""
