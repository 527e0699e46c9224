import sys

from pipelines.sentiment.task import cli

sys.exit(cli())
