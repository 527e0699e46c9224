import sys

from pipelines.core import main
from pipelines.sentiment.task import SentimentTask

sys.exit(main(SentimentTask()))
