import sys

from pipelines.translate.task import cli

sys.exit(cli())
