"""``python -m latent_edit_bench.cli ...`` is ``bench ...`` (the tests run the CLI as a user would)."""

from latent_edit_bench.cli import main

main()
