"""`python -m fxplat ...`: the CLI, as the supervisor starts its children."""
from fxplat.cli import app

app(prog_name="fxplat")
