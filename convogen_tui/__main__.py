from convogen_tui.cli.main import run

run()
