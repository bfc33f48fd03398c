import sys

from pulse_pipeline_demo.demo import main

sys.exit(main())
