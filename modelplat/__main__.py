"""`python -m modelplat ...`: the same CLI as the `modelplat` command (handy in a venv or CI
image where the scripts folder is not on PATH)."""

from .entry import main

main()
