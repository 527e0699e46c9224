import sys

from pipelines.anomaly.task import AnomalyTask
from pipelines.core import main

sys.exit(main(AnomalyTask()))
