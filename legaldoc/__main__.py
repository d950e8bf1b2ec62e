from legaldoc.cli.main import run

run()
