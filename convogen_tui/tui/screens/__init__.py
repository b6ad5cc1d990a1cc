"""Screens of the app: the experiment list and the panes of one experiment."""
