import sys

from pipelines.core import main
from pipelines.textgen.task import TextgenTask

sys.exit(main(TextgenTask()))
