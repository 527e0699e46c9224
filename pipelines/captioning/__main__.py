import sys

from pipelines.captioning.task import CaptioningTask
from pipelines.core import main

sys.exit(main(CaptioningTask()))
