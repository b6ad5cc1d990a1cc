"""The panes of the experiment screen (F2-F6): widgets inside ExperimentScreen, not screens of their own."""
