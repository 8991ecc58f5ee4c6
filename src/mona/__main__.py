"""`python -m mona ...`: the `mona` command, for when the console script is not on PATH."""

from mona.cli import main

if __name__ == "__main__":
    main()
