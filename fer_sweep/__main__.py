"""`python -m fer_sweep ...`: one training job, or a sweep with --multirun."""
from fer_sweep.app import main

main()
