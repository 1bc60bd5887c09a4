"""`python -m fer_sweep ...`: one training job, or a sweep with --multirun."""
import sys


def run() -> None:
    """The command (also the `fer-sweep` script): a launcher plugin that is not installed is one line naming the
    extra, exit 2, before Hydra composes anything."""
    from fer_sweep.extras import missing_launcher

    problem = missing_launcher(sys.argv[1:])
    if problem:
        print(f"fer_sweep: error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    from fer_sweep.app import main

    main()


if __name__ == "__main__":
    run()
