import sys

from pipelines.core import main
from pipelines.translate.task import TranslateTask

sys.exit(main(TranslateTask()))
