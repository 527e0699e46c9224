import sys

from pipelines.core import main
from pipelines.speech.task import SpeechTask

sys.exit(main(SpeechTask()))
