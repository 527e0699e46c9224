import sys

from pipelines.core import main
from pipelines.forecast.task import ForecastTask

sys.exit(main(ForecastTask()))
