"""Screens of the app: the experiment list, one experiment (its panes live in tui.panes), models, dialogs."""
