"""Judging data: dialogs, quality rules, verdicts, near-duplicates, diversity, coverage, stats, export."""
