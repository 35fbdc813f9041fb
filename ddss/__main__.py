"""`python -m ddss`: the command line (`ddss --help`)."""
from ddss.main import cli

cli()
