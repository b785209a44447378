from nas.cli.app import app

app()
