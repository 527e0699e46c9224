import sys

from pipelines.textgen.task import cli

sys.exit(cli())
