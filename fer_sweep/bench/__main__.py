"""`python -m fer_sweep.bench`: see fer_sweep/bench/__init__.py for what it measures."""
from fer_sweep.bench.cli import main

if __name__ == "__main__":
    main()
