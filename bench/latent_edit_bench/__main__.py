"""``python -m latent_edit_bench ...`` is ``bench ...`` (a plain checkout: PYTHONPATH=bench:methods:metrics:reports)."""

from latent_edit_bench.cli import main

if __name__ == "__main__":
    main()
